-- wrk_limit.lua - makes wrk (which only knows durations) send a bounded
-- number of requests, for the `real` suite (tests/test_real.c):
--
--   wrk -t2 ... -s wrk_limit.lua URL -- PER-THREAD-COUNT [DELAY-MS]
--
-- Each thread stops after PER-THREAD-COUNT responses; DELAY-MS paces the
-- requests so the load is still on while the test takes a live report.
local limit, pause, done

function init(args)
  limit = tonumber(args[1]) or 1000
  pause = tonumber(args[2]) or 0
  done = 0
end

function delay()
  return pause
end

function response(status, headers, body)
  done = done + 1
  if done >= limit then
    wrk.thread:stop()
  end
end
