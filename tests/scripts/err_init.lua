-- Runtime error in init (line 3).
function init(args)
  error("init refuses: " .. tostring(args[1]))
end
