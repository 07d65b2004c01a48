/* bench target (d): a process of 8 threads (main and 7 pthreads) that sleep in a loop, or of
   argv[2] threads. Creates the file argv[1] once every thread runs. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static void *sleeper(void *arg) {
    (void)arg;
    struct timespec t = {0, 50 * 1000 * 1000};
    for (;;) nanosleep(&t, 0);
    return 0;
}
int main(int argc, char **argv) {
    int count = argc > 2 ? atoi(argv[2]) : 8;
    for (int i = 1; i < count; i++) {
        pthread_t thread;
        if (pthread_create(&thread, 0, sleeper, 0) != 0) return 1;
    }
    if (argc > 1) { int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644); if (fd >= 0) close(fd); }
    sleeper(0);
}
