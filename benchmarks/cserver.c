/*
 * cserver: a minimal single-threaded epoll server speaking the suite's
 * protocols, so the suite can measure the load generator's ceiling.
 *
 *   cserver --port P --protocol reply|echo
 *
 * reply: every chunk read goes back as "Re:" + chunk, in pieces of at most
 *        124 payload bytes (the trio-echo wire contract).
 * echo:  RFC 862, every byte back unchanged.
 *
 * Prints "<protocol> server (c-epoll) listening on 127.0.0.1:PORT" and runs
 * until SIGINT or SIGTERM, then exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE 262144
#define PIECE_MAX 124
#define OUT_MAX (READ_SIZE + 3 * (READ_SIZE / PIECE_MAX + 1))
#define MAX_EVENTS 512
#define BURST 16 /* reads per connection per event before yielding to the others */

struct conn {
    int fd;
    int eof;
    int queued_ready;
    char *pending; /* bytes the kernel did not take yet */
    size_t pending_len, pending_off;
    struct conn *next_ready;
};

static int reply_protocol = 1;
static volatile sig_atomic_t stop;
static struct conn *ready_head;
static unsigned char in_buf[READ_SIZE];
static unsigned char out_buf[OUT_MAX];

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void drop(struct conn *c) {
    close(c->fd);
    free(c->pending);
    c->pending = NULL;
    c->fd = -1;
    if (!c->queued_ready) free(c);
}

/* Write out[0..len); keep what the kernel refuses. Return 0 if the connection died. */
static int send_or_keep(struct conn *c, const unsigned char *out, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, out + off, len - off, MSG_NOSIGNAL);
        if (n > 0) off += (size_t)n;
        else if (n < 0 && errno == EINTR) continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        else return 0;
    }
    if (off < len) {
        c->pending = malloc(len - off);
        if (!c->pending) return 0;
        memcpy(c->pending, out + off, len - off);
        c->pending_len = len - off;
        c->pending_off = 0;
    }
    return 1;
}

static int flush_pending(struct conn *c) {
    while (c->pending) {
        ssize_t n = send(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->pending_off += (size_t)n;
            if (c->pending_off == c->pending_len) {
                free(c->pending);
                c->pending = NULL;
            }
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 1;
        } else {
            return 0;
        }
    }
    return 1;
}

/* Serve what is readable; return 0 to drop the connection. */
static int serve(struct conn *c) {
    if (!flush_pending(c)) return 0;
    for (int i = 0; i < BURST; i++) {
        if (c->pending) return 1; /* EPOLLOUT resumes us */
        if (c->eof) return 0;
        ssize_t n = recv(c->fd, in_buf, sizeof in_buf, 0);
        if (n == 0) {
            c->eof = 1;
            continue;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        size_t len = 0;
        const unsigned char *out = in_buf;
        if (reply_protocol) {
            for (size_t at = 0; at < (size_t)n; at += PIECE_MAX) {
                size_t piece = (size_t)n - at < PIECE_MAX ? (size_t)n - at : PIECE_MAX;
                memcpy(out_buf + len, "Re:", 3);
                memcpy(out_buf + len + 3, in_buf + at, piece);
                len += 3 + piece;
            }
            out = out_buf;
        } else {
            len = (size_t)n;
        }
        if (!send_or_keep(c, out, len)) return 0;
    }
    if (!c->queued_ready) { /* more may be waiting: come back after the others */
        c->queued_ready = 1;
        c->next_ready = ready_head;
        ready_head = c;
    }
    return 1;
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--protocol")) reply_protocol = !strcmp(argv[i + 1], "reply");
        else {
            fprintf(stderr, "usage: cserver --port P --protocol reply|echo\n");
            return 2;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 1024) < 0) {
        perror("cserver: listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("%s server (c-epoll) listening on 127.0.0.1:%d\n", reply_protocol ? "reply" : "echo",
           ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    static struct epoll_event events[MAX_EVENTS];
    unsigned long served = 0;
    while (!stop) {
        int n = epoll_wait(ep, events, MAX_EVENTS, ready_head ? 0 : 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("cserver: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {
                for (int k = 0; k < 64; k++) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    if (!c) {
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                             .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                    served++;
                }
                continue;
            }
            if (c->fd >= 0 && !serve(c)) drop(c);
        }
        struct conn *list = ready_head;
        ready_head = NULL;
        while (list) {
            struct conn *c = list;
            list = c->next_ready;
            c->queued_ready = 0;
            if (c->fd < 0) free(c);
            else if (!serve(c)) drop(c);
        }
    }
    printf("served %lu connections\n", served);
    return 0;
}
