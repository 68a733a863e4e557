# perl_fork_server.pl - a fork-per-connection server in the style of Perl
# daemons (IO::Socket::INET, accept in the parent, fork, the parent closes
# its copy): each child reads to EOF and then never closes the connection.
#
#   perl perl_fork_server.pl CONNECTIONS CTL-FD
#
# Prints "port N", then "child PID eof" per connection once that child has
# seen the EOF. Every process exits when the test closes the control pipe.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Handle;

my ($n, $ctl_fd) = @ARGV;
open(my $ctl, '<&=', $ctl_fd) or die "ctl: $!";
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
                              ReuseAddr => 1) or die "listen: $!";
STDOUT->autoflush(1);
print "port ", $l->sockport, "\n";
for (1 .. $n) {
    my $c = $l->accept or die "accept: $!";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $l;
        my $buf;
        while (sysread($c, $buf, 64)) { }
        print "child $$ eof\n";
        sysread($ctl, $buf, 1);    # leak: $c stays open until the test ends us
        exit 0;
    }
    close $c;
}
my $buf;
sysread($ctl, $buf, 1);
1 while wait() > 0;
