-- Defines delay(), which aefm-load ignores under -R (as wrk2 does); it must warn.
function delay()
  return 1000
end
