-- Runtime error while the script loads (line 3).
local config = nil
local port = config.port
