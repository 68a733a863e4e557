# rb_server.rb - an IO.select echo server for the `real` suite
# (tests/test_real.c) that keeps its client sockets in a session table.
#
#     ruby rb_server.rb leak|good
#
# Prints "listening PORT" once it accepts connections and exits cleanly when
# stdin reaches EOF (the test closes its end: no sleeps, no signals), after
# printing "bye N", N the sessions still held.
#
# The bug in `leak` mode: on the peer's FIN (read returns nil) the handler
# stops watching the socket but leaves it in the session table, so nothing
# closes it until Ruby's finalizers do, at exit: CLOSE_WAIT for the whole
# life of the process. `good` mode closes it on that path.
require 'socket'

leak = ARGV[0] == 'leak'
server = TCPServer.new('127.0.0.1', 0)
$stdout.sync = true
puts "listening #{server.addr[1]}"

sessions = {}
watched = [server, $stdin]
catch(:done) do
  loop do
    ready, = IO.select(watched)
    ready.each do |io|
      if io == server
        client = server.accept
        sessions[client.fileno] = client
        watched << client
      elsif io == $stdin
        throw :done if $stdin.read_nonblock(4096, exception: false).nil?
      else
        data = io.read_nonblock(4096, exception: false)
        next if data == :wait_readable
        if data.nil?
          watched.delete(io)
          next if leak # the bug: the session (and its socket) stays
          sessions.delete(io.fileno)
          io.close
        else
          io.write(data)
        end
      end
    end
  end
end
puts "bye #{sessions.size}"
