/* The sandbox ("pause") process of every pod, built by hack/images.sh into registry.k8s.io/pause.
 * It holds the pod's namespaces open. As PID 1 of the pod it gets no default signal actions,
 * so it handles INT/TERM itself (exit 0 when the pod stops) and reaps orphaned children. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

int main(void) {
  if (getpid() != 1) fprintf(stderr, "pause: warning: not running as PID 1\n");
  struct sigaction on_stop = {.sa_handler = stop}, on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &on_stop, NULL) || sigaction(SIGTERM, &on_stop, NULL) ||
      sigaction(SIGCHLD, &on_child, NULL)) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) pause();
}
