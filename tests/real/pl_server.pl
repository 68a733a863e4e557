# pl_server.pl - an IO::Select echo server for the `real` suite
# (tests/test_real.c) that keeps its client sockets in a session table.
#
#     perl pl_server.pl leak|good
#
# Prints "listening PORT" once it accepts connections and exits cleanly when
# stdin reaches EOF (the test closes its end: no sleeps, no signals), after
# printing "bye N", N the sessions still held.
#
# The bug in `leak` mode: on the peer's FIN (sysread returns 0) the handler
# stops watching the socket but leaves it in the session table, so nothing
# closes it until Perl's global destruction does, at exit: CLOSE_WAIT for
# the whole life of the process. `good` mode closes it on that path.
use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;

my $leak = ($ARGV[0] // '') eq 'leak';
my $server = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => 0,
    Listen    => 16,
    ReuseAddr => 1
) or die "listen: $!";
$| = 1;
print "listening ", $server->sockport, "\n";

our %sessions;    # a package global: freed by global destruction, at exit
my $select = IO::Select->new($server, \*STDIN);
LOOP: while (1) {
    for my $fh ($select->can_read) {
        if ($fh == $server) {
            my $client = $server->accept or next;
            $sessions{fileno $client} = $client;
            $select->add($client);
        } elsif (fileno $fh == fileno STDIN) {
            last LOOP unless sysread(STDIN, my $ignored, 4096);
        } else {
            my $n = sysread($fh, my $buf, 4096);
            if (!$n) {
                $select->remove($fh);
                next if $leak;    # the bug: the session (and its socket) stays
                delete $sessions{fileno $fh};
                close $fh;
                next;
            }
            syswrite($fh, $buf);
        }
    }
}
print "bye ", scalar(keys %sessions), "\n";
