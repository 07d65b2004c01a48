/* bench target (c): a tree of 51 sleeping processes (the root, 5 children, 9 grandchildren
   under each), or of argv[2] children with argv[3] grandchildren each, in a session of its
   own so that one kill of its group ends it. Creates the file argv[1] once every process exists. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static void sleep_forever(void) {
    struct timespec t = {0, 50 * 1000 * 1000};
    for (;;) nanosleep(&t, 0);
}
int main(int argc, char **argv) {
    setsid();
    int ready[2];
    if (pipe(ready) != 0) return 1;
    int children = argc > 3 ? atoi(argv[2]) : 5, grandchildren = argc > 3 ? atoi(argv[3]) : 9;
    for (int i = 0; i < children; i++) {
        if (fork() == 0) {
            for (int j = 0; j < grandchildren; j++) {
                if (fork() == 0) { close(ready[0]); close(ready[1]); sleep_forever(); }
            }
            if (write(ready[1], "x", 1) != 1) return 1;
            close(ready[0]); close(ready[1]);
            sleep_forever();
        }
    }
    /* every child reports once its 9 children exist; the pipe is closed before the dump */
    char c;
    for (int i = 0; i < children; i++) if (read(ready[0], &c, 1) != 1) return 1;
    close(ready[0]); close(ready[1]);
    if (argc > 1) { int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644); if (fd >= 0) close(fd); }
    sleep_forever();
}
