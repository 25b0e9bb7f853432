/*
 * loadgen: the benchmark suite's closed-loop TCP load generator.
 *
 * One thread, one epoll set, non-blocking sockets, edge-triggered events.
 * It opens N connections to 127.0.0.1:PORT and keeps DEPTH messages in
 * flight on each (1 = lockstep), validating every reply byte for byte:
 *
 *   reply  every chunk the server reads comes back as "Re:" + chunk, in
 *          pieces of 1..124 payload bytes; the generator knows what it sent,
 *          so it parses the pieces and checks each payload byte. Messages
 *          must not contain 'R', which makes the split unambiguous.
 *   echo   RFC 862: the bytes come back unchanged.
 *
 * Modes:
 *   steady  connect N (at most MAX_PENDING connecting at once; each holds after
 *           its first round trip until all are in), warm up, measure a fixed
 *           window, drain, half-close, wait for the server's close.
 *   churn   N slots; each connects, runs one session of SESSION messages,
 *           half-closes, waits for the server's close, and starts again.
 *   idle    connect N, one round trip each, print "event ready", hold until
 *           a line (or EOF) arrives on stdin or HOLD seconds pass, close.
 *
 * --gate 1 (steady and churn): after the warm-up, print "event warmed" and keep
 * the load running until a line arrives on stdin, then start the window; after
 * the window, wait for a second line before half-closing, and before exiting
 * (EOF releases both).
 * A profiler attached between the two lines sees exactly the window's work.
 *
 * Output on stdout: "event <name>" lines as phases change (the suite samples
 * the server's CPU time and memory on them), then one "result {json}" line.
 * Exit status 0 when every reply was valid, 1 otherwise, 2 on usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 64
#define PIECE_MAX 124
#define SEED_COUNT 7
#define READ_SIZE 65536
#define MAX_EVENTS 512
#define DEFAULT_SAMPLE_CAP 8000000u

enum { PROTO_REPLY, PROTO_ECHO };
enum { MODE_STEADY, MODE_CHURN, MODE_IDLE };
enum { C_FREE, C_CONNECTING, C_OPEN, C_DRAINING, C_CLOSED };
enum { PH_RAMP, PH_WARMUP, PH_WINDOW, PH_DRAIN, PH_HOLD, PH_DONE };

struct conn {
    int fd;
    int state;
    int ramped;          /* the first reply has arrived */
    uint64_t queued;     /* messages queued for sending on this connection */
    uint64_t done;       /* messages whose reply is complete */
    uint32_t in_off;     /* payload bytes of message `done` received so far */
    uint8_t rstate;      /* reply parser: bytes of "Re:" matched; 3 = inside a piece */
    uint8_t piece;       /* payload bytes in the current piece */
    char *out;           /* unsent bytes: out[out_off..out_len) */
    size_t out_len, out_off;
    uint64_t sent_at[MAX_DEPTH];
    uint64_t session_start;
    uint64_t window_done; /* replies (or sessions, in churn) completed in the window */
};

static struct {
    int port, protocol, mode, connections, depth, size, max_pending, session;
    double warmup, duration, hold, ramp_timeout, drain_timeout;
    uint32_t sample_cap;
    int gate;
} opt = {0, PROTO_REPLY, MODE_STEADY, 1, 1, 0, 256, SEED_COUNT, 0.5, 2.0, 30.0, 60.0, 15.0,
         DEFAULT_SAMPLE_CAP, 0};

static char seed_msgs[SEED_COUNT][32];
static size_t seed_lens[SEED_COUNT];
static char *fixed_msg;
static size_t max_msg_len;

static struct conn *conns;
static int epfd;
static int phase = PH_RAMP;
static int opened, ramped, closed, pending_ramp;
static uint64_t errors;
static char first_error[256];
static uint64_t t_start, t_phase, t_window0, t_window1, t_ramped, t_drain0, t_drained;
static struct rusage ru0, ru1;
static uint64_t window_bytes_in, window_bytes_out, total_requests;
static uint64_t window_wait_ns; /* time spent blocked in epoll_wait inside the window */
static uint64_t sessions_started;
static uint32_t *samples;
static uint32_t n_samples, samples_cap_alloc;
static uint64_t samples_dropped;
static int stdin_watched;
static int gate_lines;   /* lines read on stdin under --gate (2 once EOF is seen) */
static int gate_waiting; /* "event warmed" printed, the window not started yet */
static volatile sig_atomic_t interrupted;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(struct conn *c, const char *fmt, ...) {
    errors++;
    if (errors == 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = c ? snprintf(first_error, sizeof first_error, "connection %ld: ",
                             (long)(c - conns))
                  : 0;
        if (n >= 0 && (size_t)n < sizeof first_error)
            vsnprintf(first_error + n, sizeof first_error - (size_t)n, fmt, ap);
        va_end(ap);
    }
}

static void emit(const char *name) {
    printf("event %s\n", name);
    fflush(stdout);
}

static const char *message(uint64_t n, size_t *len) {
    if (fixed_msg) {
        *len = (size_t)opt.size;
        return fixed_msg;
    }
    *len = seed_lens[n % SEED_COUNT];
    return seed_msgs[n % SEED_COUNT];
}

static void record_sample(uint64_t ns) {
    if (n_samples >= opt.sample_cap) {
        samples_dropped++;
        return;
    }
    if (n_samples == samples_cap_alloc) {
        uint32_t grow = samples_cap_alloc ? samples_cap_alloc * 2 : 65536;
        if (grow > opt.sample_cap) grow = opt.sample_cap;
        uint32_t *p = realloc(samples, (size_t)grow * sizeof *samples);
        if (!p) {
            samples_dropped++;
            return;
        }
        samples = p;
        samples_cap_alloc = grow;
    }
    samples[n_samples++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int may_queue(const struct conn *c) {
    if (c->state != C_OPEN) return 0;
    if (c->queued - c->done >= (uint64_t)opt.depth) return 0;
    switch (opt.mode) {
    case MODE_IDLE:
        return c->queued < 1;
    case MODE_CHURN:
        return c->queued < (uint64_t)opt.session;
    default:
        if (phase == PH_RAMP) return c->queued < 1; /* hold until every connection is in */
        return phase != PH_DRAIN && phase != PH_DONE;
    }
}

static void close_conn(struct conn *c) {
    if (!c->ramped && opt.mode != MODE_CHURN) { /* a failed connection must not stall the ramp */
        c->ramped = 1;
        ramped++;
        pending_ramp--;
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = C_CLOSED;
    c->out_len = c->out_off = 0;
    closed++;
}

/* Queue what the window allows, then write as much as the kernel takes. */
static void pump(struct conn *c) {
    if (c->state != C_OPEN) return;
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    uint64_t now = 0;
    while (may_queue(c)) {
        size_t len;
        const char *m = message(c->queued, &len);
        if (c->out_len + len > (size_t)opt.depth * max_msg_len) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        memcpy(c->out + c->out_len, m, len);
        c->out_len += len;
        if (!now) now = now_ns();
        c->sent_at[c->queued % MAX_DEPTH] = now;
        c->queued++;
    }
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            if (phase == PH_WINDOW) window_bytes_out += (uint64_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return; /* EPOLLOUT (edge-triggered) will call us again */
        } else {
            fail(c, "send: %s", strerror(errno));
            close_conn(c);
            return;
        }
    }
    if (opt.mode == MODE_CHURN && c->done == (uint64_t)opt.session && c->queued == c->done) {
        shutdown(c->fd, SHUT_WR);
        c->state = C_DRAINING;
    }
}

static void reply_complete(struct conn *c) {
    uint64_t now = now_ns();
    uint64_t sent = c->sent_at[c->done % MAX_DEPTH];
    c->done++;
    c->in_off = 0;
    if (!c->ramped) {
        c->ramped = 1;
        ramped++;
        pending_ramp--;
    }
    if (phase == PH_WINDOW) {
        total_requests++;
        if (opt.mode != MODE_CHURN) {
            c->window_done++;
            record_sample(now - sent);
        }
    }
    if (opt.mode == MODE_CHURN && c->done == (uint64_t)opt.session && c->queued == c->done &&
        c->out_off == c->out_len) {
        shutdown(c->fd, SHUT_WR);
        c->state = C_DRAINING;
    }
}

/* Feed received bytes to the validator; return 0 on a protocol violation. */
static int consume(struct conn *c, const unsigned char *p, size_t n) {
    if (phase == PH_WINDOW) window_bytes_in += n;
    if (opt.protocol == PROTO_ECHO) {
        while (n > 0) {
            if (c->done >= c->queued) {
                fail(c, "%zu bytes arrived while no reply was expected", n);
                return 0;
            }
            size_t len;
            const char *m = message(c->done, &len);
            size_t take = len - c->in_off;
            if (take > n) take = n;
            if (memcmp(m + c->in_off, p, take) != 0) {
                fail(c, "echo differs from message %llu at byte %u",
                     (unsigned long long)c->done, c->in_off);
                return 0;
            }
            c->in_off += (uint32_t)take;
            p += take;
            n -= take;
            if (c->in_off == len) reply_complete(c);
        }
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char b = p[i];
        if (c->rstate < 3) {
            if (b != (unsigned char)"Re:"[c->rstate]) {
                fail(c, "byte 0x%02x where \"Re:\" byte %d was expected", b, c->rstate);
                return 0;
            }
            if (++c->rstate == 3) c->piece = 0;
            continue;
        }
        if (b == 'R' && c->piece > 0) { /* messages hold no 'R': a new piece starts */
            c->rstate = 1;
            continue;
        }
        if (c->piece >= PIECE_MAX) {
            fail(c, "a \"Re:\" piece longer than %d bytes", PIECE_MAX);
            return 0;
        }
        if (c->done >= c->queued) {
            fail(c, "payload byte 0x%02x while no reply was expected", b);
            return 0;
        }
        size_t len;
        const char *m = message(c->done, &len);
        if (b != (unsigned char)m[c->in_off]) {
            fail(c, "reply to message %llu: byte %u is 0x%02x, expected 0x%02x",
                 (unsigned long long)c->done, c->in_off, b, (unsigned char)m[c->in_off]);
            return 0;
        }
        c->piece++;
        if (++c->in_off == len) reply_complete(c);
    }
    return 1;
}

static int open_conn(struct conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(c, "socket: %s", strerror(errno));
        return 0;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)opt.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        fail(c, "connect: %s", strerror(errno));
        close(fd);
        return 0;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        fail(c, "epoll_ctl: %s", strerror(errno));
        close(fd);
        return 0;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    c->queued = c->done = 0;
    c->in_off = 0;
    c->rstate = 0;
    c->piece = 0;
    c->out_len = c->out_off = 0;
    c->session_start = now_ns();
    return 1;
}

static void on_eof(struct conn *c) {
    int at_boundary = opt.protocol == PROTO_ECHO || c->rstate == 3 || c->queued == 0;
    if (c->state == C_DRAINING && c->done == c->queued && at_boundary && c->in_off == 0) {
        if (opt.mode == MODE_CHURN) {
            if (phase == PH_WINDOW) {
                c->window_done++;
                record_sample(now_ns() - c->session_start);
            }
            close(c->fd);
            c->fd = -1;
            if (phase == PH_DRAIN || phase == PH_DONE || interrupted) {
                c->state = C_CLOSED;
                closed++;
            } else if (open_conn(c)) {
                sessions_started++;
            } else {
                c->state = C_CLOSED;
                closed++;
            }
            return;
        }
        close_conn(c);
        return;
    }
    if (c->done < c->queued)
        fail(c, "the server closed the connection with %llu replies outstanding",
             (unsigned long long)(c->queued - c->done));
    else
        fail(c, "the server closed the connection");
    close_conn(c);
}

static void on_event(struct conn *c, uint32_t events) {
    if (c->state == C_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(c, "connect: %s", strerror(err));
            close_conn(c);
            return;
        }
        c->state = C_OPEN;
        pump(c);
    }
    if (c->state != C_OPEN && c->state != C_DRAINING) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        static unsigned char buf[READ_SIZE];
        for (;;) {
            ssize_t n = recv(c->fd, buf, sizeof buf, 0);
            if (n > 0) {
                if (!consume(c, buf, (size_t)n)) {
                    close_conn(c);
                    return;
                }
                if ((size_t)n < sizeof buf) break; /* the socket is drained: skip an EAGAIN */
            } else if (n == 0) {
                on_eof(c);
                return;
            } else if (errno == EINTR) {
                continue;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            } else {
                fail(c, "recv: %s", strerror(errno));
                close_conn(c);
                return;
            }
        }
    }
    pump(c);
}

/*
 * A short read leaves an edge-triggered socket drained only if no more data
 * arrived meanwhile; EPOLLET reports bytes that arrive later as a new edge,
 * so skipping the EAGAIN read is safe.
 */

static void start_phase(int p) {
    int was = phase;
    phase = p;
    t_phase = now_ns();
    if (was == PH_RAMP && (p == PH_WARMUP || p == PH_WINDOW))
        for (int i = 0; i < opt.connections; i++) pump(&conns[i]); /* release the load */
    if (p == PH_WINDOW) {
        getrusage(RUSAGE_SELF, &ru0);
        t_window0 = t_phase;
        emit("window-start");
    } else if (p == PH_DRAIN) {
        t_drain0 = t_phase;
        if (t_window0 && !t_window1) {
            getrusage(RUSAGE_SELF, &ru1);
            t_window1 = t_phase;
            emit("window-end");
        }
        for (int i = 0; i < opt.connections; i++) pump(&conns[i]);
    } else if (p == PH_HOLD) {
        emit("ready");
    }
}

static void begin_closing(void) {
    /* steady and idle: half-close every connection whose replies are all in */
    for (int i = 0; i < opt.connections; i++) {
        struct conn *c = &conns[i];
        if (c->state == C_OPEN && c->done == c->queued && c->out_off == c->out_len) {
            shutdown(c->fd, SHUT_WR);
            c->state = C_DRAINING;
        }
    }
}

static double secs(uint64_t ns) { return (double)ns / 1e9; }

static double tv(const struct timeval *t) { return (double)t->tv_sec + (double)t->tv_usec / 1e6; }

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double pct(double q) {
    if (!n_samples) return 0;
    size_t i = (size_t)(q * (double)(n_samples - 1) + 0.5);
    return (double)samples[i] / 1e3; /* microseconds */
}

static void print_result(void) {
    double window = t_window1 > t_window0 ? secs(t_window1 - t_window0) : 0;
    double cpu = t_window1 ? (tv(&ru1.ru_utime) - tv(&ru0.ru_utime)) +
                                 (tv(&ru1.ru_stime) - tv(&ru0.ru_stime))
                           : 0;
    qsort(samples, n_samples, sizeof *samples, cmp_u32);
    printf("result {\"ok\": %s, \"errors\": %llu, \"error\": \"", errors ? "false" : "true",
           (unsigned long long)errors);
    for (const char *s = first_error; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar((unsigned char)*s >= 0x20 ? *s : '?');
    }
    printf("\", \"mode\": \"%s\", \"protocol\": \"%s\", \"connections\": %d, \"depth\": %d, "
           "\"size\": %d, ",
           opt.mode == MODE_STEADY ? "steady" : opt.mode == MODE_CHURN ? "churn" : "idle",
           opt.protocol == PROTO_REPLY ? "reply" : "echo", opt.connections, opt.depth, opt.size);
    printf("\"drain_s\": %.6f, ", t_drained ? secs(t_drained - t_drain0) : -1.0);
    printf("\"busy\": %.4f, ", window > 0 ? 1.0 - secs(window_wait_ns) / window : 0);
    printf("\"ramp_s\": %.6f, \"window_s\": %.6f, \"requests\": %llu, \"sessions_started\": %llu, "
           "\"bytes_in\": %llu, \"bytes_out\": %llu, \"cpu_s\": %.6f, \"cpu_util\": %.4f, ",
           t_ramped ? secs(t_ramped - t_start) : -1.0, window,
           (unsigned long long)total_requests,
           (unsigned long long)(opt.mode == MODE_CHURN ? sessions_started : 0),
           (unsigned long long)window_bytes_in, (unsigned long long)window_bytes_out, cpu,
           window > 0 ? cpu / window : 0);
    printf("\"latency_us\": {\"samples\": %u, \"dropped\": %llu, \"p50\": %.2f, \"p90\": %.2f, "
           "\"p99\": %.2f, \"p999\": %.2f, \"max\": %.2f}, ",
           n_samples, (unsigned long long)samples_dropped, pct(0.5), pct(0.9), pct(0.99),
           pct(0.999), pct(1.0));
    printf("\"per_connection\": [");
    for (int i = 0; i < opt.connections; i++)
        printf("%s%llu", i ? ", " : "", (unsigned long long)conns[i].window_done);
    printf("]}\n");
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P [--protocol reply|echo] [--mode steady|churn|idle]\n"
            "               [--connections N] [--depth K] [--size BYTES (0 = seed messages)]\n"
            "               [--warmup S] [--duration S] [--session N] [--hold S]\n"
            "               [--max-pending N] [--ramp-timeout S] [--drain-timeout S]\n"
            "               [--sample-cap N] [--gate 0|1]\n");
    exit(2);
}

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

static void parse(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--protocol")) {
            if (!strcmp(v, "reply")) opt.protocol = PROTO_REPLY;
            else if (!strcmp(v, "echo")) opt.protocol = PROTO_ECHO;
            else usage();
        } else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "steady")) opt.mode = MODE_STEADY;
            else if (!strcmp(v, "churn")) opt.mode = MODE_CHURN;
            else if (!strcmp(v, "idle")) opt.mode = MODE_IDLE;
            else usage();
        } else if (!strcmp(a, "--connections")) opt.connections = atoi(v);
        else if (!strcmp(a, "--depth")) opt.depth = atoi(v);
        else if (!strcmp(a, "--size")) opt.size = atoi(v);
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--session")) opt.session = atoi(v);
        else if (!strcmp(a, "--hold")) opt.hold = atof(v);
        else if (!strcmp(a, "--max-pending")) opt.max_pending = atoi(v);
        else if (!strcmp(a, "--ramp-timeout")) opt.ramp_timeout = atof(v);
        else if (!strcmp(a, "--drain-timeout")) opt.drain_timeout = atof(v);
        else if (!strcmp(a, "--sample-cap")) opt.sample_cap = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--gate")) opt.gate = atoi(v);
        else usage();
    }
    if (opt.port <= 0 || opt.port > 65535 || opt.connections < 1 || opt.depth < 1 ||
        opt.depth > MAX_DEPTH || opt.size < 0 || opt.size > 16 * 1024 * 1024 ||
        opt.session < 1 || opt.max_pending < 1 || opt.duration <= 0 || opt.warmup < 0 ||
        opt.hold < 0 || opt.ramp_timeout <= 0 || opt.drain_timeout <= 0)
        usage();
}

static void build_messages(void) {
    for (int i = 0; i < SEED_COUNT; i++) {
        snprintf(seed_msgs[i], sizeof seed_msgs[i], "%d - Send Message", i);
        seed_lens[i] = strlen(seed_msgs[i]);
        if (seed_lens[i] > max_msg_len) max_msg_len = seed_lens[i];
    }
    if (opt.size > 0) {
        /* every byte value but 'R' (the reply parser's piece marker) */
        fixed_msg = malloc((size_t)opt.size);
        if (!fixed_msg) exit(1);
        for (int j = 0; j < opt.size; j++) {
            unsigned char b = (unsigned char)(j * 7 + j / 251);
            fixed_msg[j] = (char)(b == 'R' ? 'r' : b);
        }
        max_msg_len = (size_t)opt.size;
    }
}

int main(int argc, char **argv) {
    parse(argc, argv);
    build_messages();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    conns = calloc((size_t)opt.connections, sizeof *conns);
    if (!conns) return 1;
    for (int i = 0; i < opt.connections; i++) {
        conns[i].fd = -1;
        conns[i].out = malloc((size_t)opt.depth * max_msg_len);
        if (!conns[i].out) return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return 1;
    if (opt.mode == MODE_IDLE || opt.gate) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        stdin_watched = epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) == 0;
    }

    t_start = t_phase = now_ns();
    int churn_slots = opt.mode == MODE_CHURN ? opt.connections : 0;
    static struct epoll_event events[MAX_EVENTS];
    /* Bounded: every phase has a deadline, and the loop ends at PH_DONE. */
    while (phase != PH_DONE) {
        uint64_t now = now_ns();
        double in_phase = secs(now - t_phase);
        if (interrupted && phase != PH_DRAIN) {
            gate_lines = 2;
            fail(NULL, "interrupted");
            start_phase(PH_DRAIN);
        }
        switch (phase) {
        case PH_RAMP:
            if (churn_slots) {
                for (int i = 0; i < opt.connections; i++)
                    if (open_conn(&conns[i])) sessions_started++;
                opened = opt.connections;
                t_ramped = now_ns();
                start_phase(opt.warmup > 0 || opt.gate ? PH_WARMUP : PH_WINDOW);
                break;
            }
            while (opened < opt.connections && pending_ramp < opt.max_pending) {
                struct conn *c = &conns[opened++];
                if (!open_conn(c)) {
                    c->state = C_CLOSED;
                    closed++;
                    ramped++; /* counted so the ramp can end; the error is reported */
                    continue;
                }
                pending_ramp++;
            }
            if (ramped >= opt.connections) {
                t_ramped = now_ns();
                if (opt.mode == MODE_IDLE) start_phase(PH_HOLD);
                else start_phase(opt.warmup > 0 || opt.gate ? PH_WARMUP : PH_WINDOW);
            } else if (in_phase > opt.ramp_timeout) {
                fail(NULL, "ramp-up: only %d of %d connections answered within %.0f s", ramped,
                     opt.connections, opt.ramp_timeout);
                start_phase(PH_DRAIN);
            }
            break;
        case PH_WARMUP:
            if (in_phase < opt.warmup) break;
            if (!opt.gate || gate_lines >= 1) {
                start_phase(PH_WINDOW);
            } else if (!gate_waiting) {
                gate_waiting = 1;
                emit("warmed");
            } else if (in_phase > opt.warmup + opt.hold) {
                fail(NULL, "no go-ahead on stdin within %.0f s of the warm-up", opt.hold);
                start_phase(PH_DRAIN);
            }
            break;
        case PH_WINDOW:
            if (in_phase >= opt.duration) start_phase(PH_DRAIN);
            break;
        case PH_HOLD:
            if (in_phase >= opt.hold) start_phase(PH_DRAIN);
            break;
        case PH_DRAIN:
            if (opt.mode != MODE_CHURN && (!opt.gate || gate_lines >= 2)) begin_closing();
            if (closed >= opened && (!opt.gate || gate_lines >= 2)) {
                phase = PH_DONE;
                t_drained = now_ns();
            }
            else if (in_phase > opt.drain_timeout) {
                fail(NULL, "%d connections still open %.0f s after the window", opened - closed,
                     opt.drain_timeout);
                for (int i = 0; i < opt.connections; i++)
                    if (conns[i].state != C_CLOSED && conns[i].state != C_FREE)
                        close_conn(&conns[i]);
                phase = PH_DONE;
            }
            break;
        }
        if (phase == PH_DONE) break;
        int timeout_ms = phase == PH_WINDOW || phase == PH_WARMUP ? 5 : 20;
        int in_window = phase == PH_WINDOW;
        uint64_t wait0 = in_window ? now_ns() : 0;
        int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
        if (in_window) window_wait_ns += now_ns() - wait0;
        if (n < 0 && errno != EINTR) {
            fail(NULL, "epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) { /* stdin: the suite is done looking (idle), or a go-ahead (gate) */
                char line[64];
                ssize_t r = read(0, line, sizeof line);
                for (ssize_t j = 0; j < r; j++) gate_lines += line[j] == '\n';
                if (r <= 0 || !opt.gate) {
                    if (r <= 0) gate_lines = 2;
                    epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
                    stdin_watched = 0;
                }
                if (phase == PH_HOLD) start_phase(PH_DRAIN);
                continue;
            }
            if (c->state == C_CLOSED || c->state == C_FREE) continue;
            on_event(c, events[i].events);
        }
    }
    if (t_window0 && !t_window1) {
        getrusage(RUSAGE_SELF, &ru1);
        t_window1 = now_ns();
    }
    print_result();
    return errors ? 1 : 0;
}
