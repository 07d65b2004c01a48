/*
 * tcp_accept_queue: a TCP listener on 127.0.0.1:PORT (--port PORT) whose clients, the test's
 * sockets, connect and each send "client N" while the program accepts none of them
 * (--clients COUNT of them wait in its accept queue).
 * On SIGTERM, without --dropped: every waiting connection is accepted, carries its client's
 * bytes and answers "server"; the queue then holds no more. With --dropped (the dump dropped
 * them as closing the listener does): the queue is empty. Either way the listener then accepts
 * a new connection of its own, which carries bytes both ways.
 */
#include "scenario.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

static int readable(int fd, int timeout_ms)
{
    struct pollfd entry = {fd, POLLIN, 0};
    return poll(&entry, 1, timeout_ms) == 1;
}

static const char *option(const char *name)
{
    for (int i = 0; i + 1 < sc_argc_extra; i++)
        if (strcmp(sc_argv_extra[i], name) == 0)
            return sc_argv_extra[i + 1];
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "tcp_accept_queue");
    sc_install_sigterm(0);
    const char *port = option("--port"), *clients_text = option("--clients");
    if (!port || !clients_text)
        sc_die("--port PORT and --clients COUNT are needed");
    int clients = atoi(clients_text);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 8) != 0)
        sc_die("listen");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    char buf[32];
    if (sc_has_flag("--dropped")) {
        sc_check(!readable(listener, 0), "the accept queue still holds connections the dump dropped");
    } else {
        for (int i = 0; i < clients; i++) {
            char expected[16];
            int length = snprintf(expected, sizeof expected, "client %d", i);
            int server = readable(listener, 5000) ? accept4(listener, NULL, NULL, SOCK_CLOEXEC) : -1;
            memset(buf, 0, sizeof buf);
            int got = server >= 0 && readable(server, 5000) ? (int)recv(server, buf, sizeof buf, 0) : -1;
            sc_check(got == length && memcmp(buf, expected, (size_t)length) == 0,
                     "waiting connection %d is gone or lost its bytes (read %d)", i, got);
            sc_check(server >= 0 && send(server, "server", 6, 0) == 6, "waiting connection %d takes no answer", i);
            if (server >= 0)
                close(server);
        }
        sc_check(!readable(listener, 0), "more connections waited than the %d clients", clients);
    }

    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sc_check(client >= 0 && connect(client, (struct sockaddr *)&address, sizeof address) == 0,
             "the listener takes no new connection");
    int server = readable(listener, 5000) ? accept4(listener, NULL, NULL, SOCK_CLOEXEC) : -1;
    memset(buf, 0, sizeof buf);
    sc_check(server >= 0 && send(client, "new", 3, 0) == 3 && readable(server, 5000) &&
                 recv(server, buf, sizeof buf, 0) == 3 && memcmp(buf, "new", 3) == 0 && send(server, "back", 4, 0) == 4 &&
                 readable(client, 5000) && recv(client, buf, sizeof buf, 0) == 4 && memcmp(buf, "back", 4) == 0,
             "a new connection to the listener does not carry bytes both ways");
    sc_finish();
}
