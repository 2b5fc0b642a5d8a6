/*
 * loop.c — see nudgel/loop.h.
 *
 * epoll (level-triggered) for fds, a binary min-heap for timers, an eventfd
 * for wake-ups from other threads. Watches live in a table indexed by fd,
 * so a callback that unwatches an fd (or another one) during a turn is
 * seen by the dispatch of the same turn: each ready fd is looked up again
 * right before its callback runs.
 */
#define _GNU_SOURCE
#include "nudgel/loop.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nudgel/log.h"
#include "nudgel/timeutil.h"

#define MAX_EVENTS   256
#define MAX_WATCHES  (1 << 20) /* hard cap of the fd table */
#define WAIT_MAX_MS  60000     /* longest single wait with nothing armed */
#define WAKE_FD_MARK (-1)

typedef struct watch {
    nudgel_loop_fd_fn *fn;
    void *opaque;
    unsigned events;
    bool active;
} watch_t;

struct nudgel_timer {
    nudgel_loop_t *loop;
    nudgel_loop_timer_fn *fn;
    void *opaque;
    int64_t due_us;
    size_t heap_index; /* SIZE_MAX while disarmed */
};

typedef struct hook {
    nudgel_loop_hook_fn *fn;
    void *opaque;
} hook_t;

struct nudgel_loop {
    int epfd;
    int wakefd;
    watch_t *watches; /* indexed by fd */
    size_t watch_cap;
    nudgel_timer_t **heap;
    size_t heap_count, heap_cap;
    hook_t *hooks;
    size_t hook_count;
    bool again;
    _Atomic uint64_t turns;
    _Atomic int64_t dispatch_started_us; /* 0 while waiting */
};

/* ---- timers: a binary min-heap on due_us -------------------------------- */

static void heap_set(nudgel_loop_t *l, size_t i, nudgel_timer_t *t)
{
    l->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(nudgel_loop_t *l, size_t i)
{
    nudgel_timer_t *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->due_us <= t->due_us)
            break;
        heap_set(l, i, l->heap[parent]);
        i = parent;
    }
    heap_set(l, i, t);
}

static void heap_down(nudgel_loop_t *l, size_t i)
{
    nudgel_timer_t *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->heap_count)
            break;
        if (child + 1 < l->heap_count && l->heap[child + 1]->due_us < l->heap[child]->due_us)
            child++;
        if (l->heap[child]->due_us >= t->due_us)
            break;
        heap_set(l, i, l->heap[child]);
        i = child;
    }
    heap_set(l, i, t);
}

static void heap_remove(nudgel_loop_t *l, nudgel_timer_t *t)
{
    size_t i = t->heap_index;
    nudgel_timer_t *last = l->heap[--l->heap_count];
    t->heap_index = SIZE_MAX;
    if (last == t)
        return;
    heap_set(l, i, last);
    heap_down(l, i);
    heap_up(l, last->heap_index);
}

nudgel_timer_t *nudgel_timer_new(nudgel_loop_t *l, nudgel_loop_timer_fn *fn, void *opaque)
{
    nudgel_timer_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->loop = l;
    t->fn = fn;
    t->opaque = opaque;
    t->heap_index = SIZE_MAX;
    return t;
}

void nudgel_timer_arm_at(nudgel_timer_t *t, int64_t due_us)
{
    nudgel_loop_t *l = t->loop;
    if (t->heap_index != SIZE_MAX) {
        int64_t before = t->due_us;
        t->due_us = due_us;
        if (due_us < before)
            heap_up(l, t->heap_index);
        else
            heap_down(l, t->heap_index);
        return;
    }
    if (l->heap_count == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
        nudgel_timer_t **heap = realloc(l->heap, cap * sizeof(heap[0]));
        if (!heap) {
            /* Cannot happen in practice (a few timers per process); never lose
             * the timer silently: fire it on the next turn instead. */
            nudgel_log_error("loop: out of memory arming a timer; running it now");
            l->again = true;
            t->fn(t->opaque);
            return;
        }
        l->heap = heap;
        l->heap_cap = cap;
    }
    t->due_us = due_us;
    heap_set(l, l->heap_count++, t);
    heap_up(l, t->heap_index);
}

void nudgel_timer_arm_in(nudgel_timer_t *t, int64_t delay_us)
{
    nudgel_timer_arm_at(t, nudgel_mono_us() + (delay_us > 0 ? delay_us : 0));
}

void nudgel_timer_arm_by(nudgel_timer_t *t, int64_t due_us)
{
    if (t->heap_index == SIZE_MAX || due_us < t->due_us)
        nudgel_timer_arm_at(t, due_us);
}

void nudgel_timer_disarm(nudgel_timer_t *t)
{
    if (t && t->heap_index != SIZE_MAX)
        heap_remove(t->loop, t);
}

bool nudgel_timer_armed(const nudgel_timer_t *t, int64_t *due_us)
{
    if (due_us)
        *due_us = t->due_us;
    return t->heap_index != SIZE_MAX;
}

void nudgel_timer_free(nudgel_timer_t *t)
{
    if (!t)
        return;
    nudgel_timer_disarm(t);
    free(t);
}

/* ---- fds -------------------------------------------------------------- */

static uint32_t epoll_events(unsigned events)
{
    return ((events & NUDGEL_LOOP_READ) ? EPOLLIN : 0u) |
           ((events & NUDGEL_LOOP_WRITE) ? EPOLLOUT : 0u);
}

nudgel_err_t nudgel_loop_watch(nudgel_loop_t *l, int fd, unsigned events, nudgel_loop_fd_fn *fn,
                               void *opaque)
{
    if (fd < 0 || fd >= MAX_WATCHES || !fn)
        return NUDGEL_ERR_INVALID_ARG;
    if ((size_t)fd >= l->watch_cap) {
        size_t cap = l->watch_cap ? l->watch_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        watch_t *w = realloc(l->watches, cap * sizeof(w[0]));
        if (!w)
            return NUDGEL_ERR_NO_MEMORY;
        memset(w + l->watch_cap, 0, (cap - l->watch_cap) * sizeof(w[0]));
        l->watches = w;
        l->watch_cap = cap;
    }
    watch_t *w = &l->watches[fd];
    struct epoll_event ev = {.events = epoll_events(events), .data.fd = fd};
    if (epoll_ctl(l->epfd, w->active ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
        /* The fd was closed and reopened behind our back: register it anew. */
        if (!(w->active && errno == ENOENT && epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == 0))
            return NUDGEL_ERR_INVALID_ARG;
    }
    *w = (watch_t){.fn = fn, .opaque = opaque, .events = events, .active = true};
    return NUDGEL_OK;
}

void nudgel_loop_unwatch(nudgel_loop_t *l, int fd)
{
    if (fd < 0 || (size_t)fd >= l->watch_cap || !l->watches[fd].active)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL); /* fails harmlessly if already closed */
    l->watches[fd] = (watch_t){0};
}

/* ---- the loop --------------------------------------------------------- */

nudgel_loop_t *nudgel_loop_new(char *errstr, size_t errstr_size)
{
    nudgel_loop_t *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = WAKE_FD_MARK};
    if (l->epfd < 0 || l->wakefd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) != 0) {
        snprintf(errstr, errstr_size, "event loop: %s", strerror(errno));
        nudgel_loop_free(l);
        return NULL;
    }
    return l;
}

void nudgel_loop_free(nudgel_loop_t *l)
{
    if (!l)
        return;
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wakefd >= 0)
        close(l->wakefd);
    for (size_t i = 0; i < l->heap_count; i++)
        l->heap[i]->heap_index = SIZE_MAX;
    free(l->heap);
    free(l->watches);
    free(l->hooks);
    free(l);
}

nudgel_err_t nudgel_loop_add_hook(nudgel_loop_t *l, nudgel_loop_hook_fn *fn, void *opaque)
{
    hook_t *hooks = realloc(l->hooks, (l->hook_count + 1) * sizeof(hooks[0]));
    if (!hooks)
        return NUDGEL_ERR_NO_MEMORY;
    l->hooks = hooks;
    l->hooks[l->hook_count++] = (hook_t){fn, opaque};
    return NUDGEL_OK;
}

void nudgel_loop_again(nudgel_loop_t *l)
{
    l->again = true;
}

void nudgel_loop_wake(nudgel_loop_t *l)
{
    uint64_t one = 1;
    ssize_t n = write(l->wakefd, &one, sizeof(one)); /* async-signal-safe */
    (void)n;
}

uint64_t nudgel_loop_turns(const nudgel_loop_t *l)
{
    return atomic_load_explicit(&l->turns, memory_order_relaxed);
}

int64_t nudgel_loop_busy_us(const nudgel_loop_t *l)
{
    int64_t started = atomic_load_explicit(&l->dispatch_started_us, memory_order_relaxed);
    return started ? nudgel_mono_us() - started : 0;
}

/* Milliseconds to wait: until the first timer (rounded up, so a timer is
 * never polled for before it is due), capped by @p max_wait_us. */
static int wait_ms(const nudgel_loop_t *l, int64_t max_wait_us)
{
    if (l->again)
        return 0;
    int64_t wait_us = max_wait_us >= 0 ? max_wait_us : (int64_t)WAIT_MAX_MS * 1000;
    if (l->heap_count > 0) {
        int64_t until = l->heap[0]->due_us - nudgel_mono_us();
        if (until < wait_us)
            wait_us = until;
    }
    if (wait_us <= 0)
        return 0;
    int64_t ms = (wait_us + 999) / 1000;
    return ms > WAIT_MAX_MS ? WAIT_MAX_MS : (int)ms;
}

static int run_due_timers(nudgel_loop_t *l)
{
    int ran = 0;
    int64_t now = nudgel_mono_us();
    /* Only timers due now: one re-armed for "now" inside its callback waits
     * for the next turn, so a zero-delay timer cannot starve the fds. */
    size_t budget = l->heap_count;
    while (budget-- > 0 && l->heap_count > 0 && l->heap[0]->due_us <= now) {
        nudgel_timer_t *t = l->heap[0];
        heap_remove(l, t);
        t->fn(t->opaque);
        ran++;
    }
    return ran;
}

int nudgel_loop_turn(nudgel_loop_t *l, int64_t max_wait_us)
{
    struct epoll_event events[MAX_EVENTS];
    int timeout = wait_ms(l, max_wait_us);
    l->again = false;
    atomic_store_explicit(&l->dispatch_started_us, 0, memory_order_relaxed);
    int n = epoll_wait(l->epfd, events, MAX_EVENTS, timeout);
    atomic_store_explicit(&l->dispatch_started_us, nudgel_mono_us(), memory_order_relaxed);
    if (n < 0 && errno != EINTR)
        nudgel_log_error("loop: epoll_wait: %s", strerror(errno));
    int ran = 0;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (fd == WAKE_FD_MARK) {
            uint64_t count;
            ssize_t r = read(l->wakefd, &count, sizeof(count));
            (void)r;
            continue;
        }
        if ((size_t)fd >= l->watch_cap || !l->watches[fd].active)
            continue; /* unwatched by an earlier callback of this turn */
        watch_t w = l->watches[fd];
        uint32_t e = events[i].events;
        unsigned ready =
            ((e & EPOLLIN) ? NUDGEL_LOOP_READ : 0u) | ((e & EPOLLOUT) ? NUDGEL_LOOP_WRITE : 0u);
        if (e & (EPOLLERR | EPOLLHUP))
            ready |= NUDGEL_LOOP_READ | NUDGEL_LOOP_WRITE;
        w.fn(w.opaque, fd, ready);
        ran++;
    }
    ran += run_due_timers(l);
    for (size_t i = 0; i < l->hook_count; i++)
        l->hooks[i].fn(l->hooks[i].opaque);
    atomic_fetch_add_explicit(&l->turns, 1, memory_order_relaxed);
    return ran;
}
