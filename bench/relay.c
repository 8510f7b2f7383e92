/* The alternative to hive/mcp_relay.py that bench/bench_mcp.py measures it against: the
 * same relay as a native program (connect to $HIVE_SOCKET, send the `mcp` request frame,
 * check the reply says ok, then copy bytes both ways). It is not shipped: hive runs the
 * Python relay (see docs/PERFORMANCE.md for why). No request tracking, no error answers. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* {"v":1,"id":1,"op":"mcp","args":{}} as msgpack, after its 4-byte length */
static const unsigned char REQUEST[] = {
    0x84, 0xa1, 'v', 0x01, 0xa2, 'i', 'd', 0x01, 0xa2, 'o', 'p', 0xa3, 'm', 'c', 'p',
    0xa4, 'a', 'r', 'g', 's', 0x80};

static int read_exact(int fd, unsigned char *buf, size_t size) {
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

static int write_all(int fd, const unsigned char *buf, size_t size) {
    while (size) {
        ssize_t n = write(fd, buf, size);
        if (n <= 0) return -1;
        buf += n;
        size -= (size_t)n;
    }
    return 0;
}

static int copy(int from, int to) {
    unsigned char buf[65536];
    ssize_t n = read(from, buf, sizeof buf);
    return n > 0 && write_all(to, buf, (size_t)n) == 0;
}

int main(void) {
    const char *path = getenv("HIVE_SOCKET");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!path || strlen(path) >= sizeof addr.sun_path) return 2;
    strcpy(addr.sun_path, path);
    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) return 1;
    unsigned char head[4] = {0, 0, 0, sizeof REQUEST}, reply[4096];
    if (write_all(sock, head, 4) || write_all(sock, REQUEST, sizeof REQUEST)) return 1;
    if (read_exact(sock, head, 4)) return 1;
    size_t size = ((size_t)head[0] << 24) | (head[1] << 16) | (head[2] << 8) | head[3];
    if (size > sizeof reply || read_exact(sock, reply, size)) return 1;
    const unsigned char ok[] = {0xa2, 'o', 'k', 0xc3};
    if (!memmem(reply, size, ok, sizeof ok)) return 1;
    struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) return 1;
        if (fds[0].revents && !copy(0, sock)) return 0;
        if (fds[1].revents && !copy(sock, 1)) return 0;
    }
}
