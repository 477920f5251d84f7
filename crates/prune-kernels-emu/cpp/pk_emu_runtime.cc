// pk_emu_runtime.cc: the fiber scheduler behind pk_emu.h and the C entry points the Rust
// side calls (launch by kernel name, guarded buffer allocation).
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "pk_emu.h"
#include "pk_emu_table.h"

namespace pk_emu {

struct Fiber {
    ucontext_t ctx;
    uint3 tid;
    int linear;
    FiberState state;
};

struct BlockState {
    uint3 bidx, bdim, gdim;
    int nthreads;
    Fiber* cur;
    std::vector<Fiber> fibers;
    std::vector<unsigned long long> slots;
    ucontext_t sched;
    const KernelInfo* kernel;
    void** args;
};

thread_local BlockState* g_block = nullptr;

static const size_t kStack = 256 * 1024;

// Stacks are kept per OS thread and reused by every block and launch.
struct Stacks {
    std::vector<char*> s;
    ~Stacks() {
        for (char* p : s) munmap(p, kStack);
    }
    char* get(size_t i) {
        while (s.size() <= i) {
            void* p = mmap(nullptr, kStack, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) return nullptr;
            s.push_back((char*)p);
        }
        return s[i];
    }
};
static thread_local Stacks g_stacks;

uint3& cur_thread_idx() { return g_block->cur->tid; }
uint3& cur_block_idx() { return g_block->bidx; }
uint3& cur_block_dim() { return g_block->bdim; }
uint3& cur_grid_dim() { return g_block->gdim; }
int cur_linear() { return g_block->cur->linear; }
int block_threads() { return g_block->nthreads; }
unsigned long long* warp_slots() { return g_block->slots.data(); }

static void suspend(FiberState st) {
    BlockState* b = g_block;
    Fiber* f = b->cur;
    f->state = st;
    swapcontext(&f->ctx, &b->sched);
}
void block_barrier() { suspend(AT_BLOCK); }
void warp_barrier() { suspend(AT_WARP); }

static void trampoline(int idx) {
    BlockState* b = g_block;
    b->kernel->invoke(b->kernel->fn, b->args);
    b->fibers[idx].state = DONE;
    // uc_link returns to the scheduler.
}

// Order in which ready fibers run between barriers.
static void schedule_order(std::vector<int>& order, int n, int schedule, unsigned long long salt) {
    order.resize(n);
    for (int i = 0; i < n; ++i) order[i] = schedule == 1 ? n - 1 - i : i;
    if (schedule >= 2) {
        unsigned long long s = salt * 0x9E3779B97F4A7C15ull + (unsigned long long)schedule;
        for (int i = n - 1; i > 0; --i) {
            s ^= s >> 33;
            s *= 0xff51afd7ed558ccdull;
            s ^= s >> 33;
            const int j = (int)(s % (unsigned long long)(i + 1));
            std::swap(order[i], order[j]);
        }
    }
}

static int run_block(BlockState& b, int schedule, unsigned long long salt, std::string& err) {
    const int n = b.nthreads;
    b.fibers.resize(n);
    b.slots.assign(n, 0ull);
    for (int i = 0; i < n; ++i) {
        Fiber& f = b.fibers[i];
        f.linear = i;
        f.tid.x = i % b.bdim.x;
        f.tid.y = (i / b.bdim.x) % b.bdim.y;
        f.tid.z = i / (b.bdim.x * b.bdim.y);
        f.state = READY;
        char* stack = g_stacks.get(i);
        if (!stack) {
            err = "out of memory for fiber stacks";
            return 1;
        }
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stack;
        f.ctx.uc_stack.ss_size = kStack;
        f.ctx.uc_link = &b.sched;
        makecontext(&f.ctx, (void (*)())trampoline, 1, i);
    }
    std::vector<int> order;
    unsigned long long round = 0;
    for (;;) {
        schedule_order(order, n, schedule, salt + round++);
        for (int i : order) {
            Fiber& f = b.fibers[i];
            if (f.state != READY) continue;
            b.cur = &f;
            swapcontext(&b.sched, &f.ctx);
        }
        int live = 0, at_block = 0;
        bool released = false;
        for (int w = 0; w < n; w += 32) {
            const int end = std::min(n, w + 32);
            int wl = 0, ww = 0, wb = 0;
            for (int i = w; i < end; ++i) {
                const FiberState s = b.fibers[i].state;
                if (s != DONE) ++wl;
                if (s == AT_WARP) ++ww;
                if (s == AT_BLOCK) ++wb;
            }
            live += wl;
            at_block += wb;
            if (ww > 0) {
                if (ww != end - w) {
                    char msg[200];
                    snprintf(msg, sizeof msg,
                             "warp %d: %d of %d lanes wait at a warp collective while %d wait "
                             "at __syncthreads and %d have returned",
                             w / 32, ww, end - w, wb, end - w - wl);
                    err = msg;
                    return 1;
                }
                for (int i = w; i < end; ++i) b.fibers[i].state = READY;
                released = true;
            }
        }
        if (released) continue;
        if (live == 0) return 0;
        if (at_block != live) {
            err = "threads neither done nor at a barrier";
            return 1;
        }
        for (Fiber& f : b.fibers)
            if (f.state == AT_BLOCK) f.state = READY;
    }
}

}  // namespace pk_emu

using namespace pk_emu;

extern "C" {

// Looks a kernel up by name: returns its parameter count and writes up to `cap` parameter
// sizes, or -1 when there is no such kernel.
int pk_emu_kernel_params(const char* name, size_t* sizes, int cap) {
    for (int k = 0; k < pk_emu_kernel_count; ++k) {
        const KernelInfo& ki = pk_emu_kernels[k];
        if (strcmp(ki.name, name) != 0) continue;
        for (int i = 0; i < ki.nparams && i < cap; ++i) sizes[i] = ki.sizes[i];
        return ki.nparams;
    }
    return -1;
}

int pk_emu_kernel_count_get(void) { return pk_emu_kernel_count; }
const char* pk_emu_kernel_name(int k) {
    return k >= 0 && k < pk_emu_kernel_count ? pk_emu_kernels[k].name : nullptr;
}

// Runs `name` over grid x block with `args` (pointers to the argument values, as for
// cuLaunchKernel).  schedule: 0 ascending, 1 descending, >= 2 shuffled with that seed.
// Returns 0, or nonzero with a message in err.
int pk_emu_launch(const char* name, const unsigned* grid, const unsigned* block, void** args,
                  int schedule, char* err, size_t errlen) {
    std::string msg;
    const KernelInfo* ki = nullptr;
    for (int k = 0; k < pk_emu_kernel_count; ++k)
        if (strcmp(pk_emu_kernels[k].name, name) == 0) ki = &pk_emu_kernels[k];
    if (!ki) {
        snprintf(err, errlen, "no kernel named %s", name);
        return 1;
    }
    const unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024 || block[2] > 64) {
        snprintf(err, errlen, "%s: invalid block %ux%ux%u", name, block[0], block[1], block[2]);
        return 1;
    }
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 2147483647u ||
        grid[1] > 65535u || grid[2] > 65535u) {
        snprintf(err, errlen, "%s: invalid grid %ux%ux%u", name, grid[0], grid[1], grid[2]);
        return 1;
    }
    BlockState b;
    b.bdim = uint3{block[0], block[1], block[2]};
    b.gdim = uint3{grid[0], grid[1], grid[2]};
    b.nthreads = (int)threads;
    b.kernel = ki;
    b.args = args;
    BlockState* saved = g_block;
    g_block = &b;
    int rc = 0;
    unsigned long long salt = 0;
    for (unsigned z = 0; z < grid[2] && rc == 0; ++z)
        for (unsigned y = 0; y < grid[1] && rc == 0; ++y)
            for (unsigned x = 0; x < grid[0] && rc == 0; ++x) {
                b.bidx = uint3{x, y, z};
                rc = run_block(b, schedule, salt++, msg);
                if (rc != 0) {
                    char where[120];
                    snprintf(where, sizeof where, "%s block (%u, %u, %u): ", name, x, y, z);
                    msg = where + msg;
                }
            }
    g_block = saved;
    if (rc != 0) snprintf(err, errlen, "%s", msg.c_str());
    return rc;
}

// A buffer of `bytes` whose end (rounded up to 16 bytes) touches an inaccessible page, with
// another inaccessible page below the first data page.  Returns the data pointer; the
// mapping is released by pk_emu_free with the same size.
void* pk_emu_alloc(size_t bytes) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t rounded = (bytes + 15) & ~(size_t)15;
    const size_t data_pages = (rounded + page - 1) / page + (rounded == 0 ? 1 : 0);
    const size_t total = (data_pages + 2) * page;
    char* base = (char*)mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return nullptr;
    if (mprotect(base + page, data_pages * page, PROT_READ | PROT_WRITE) != 0) {
        munmap(base, total);
        return nullptr;
    }
    return base + page + data_pages * page - rounded;
}

void pk_emu_free(void* p, size_t bytes) {
    if (!p) return;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t rounded = (bytes + 15) & ~(size_t)15;
    const size_t data_pages = (rounded + page - 1) / page + (rounded == 0 ? 1 : 0);
    char* end = (char*)p + rounded;
    char* base = end - data_pages * page - page;
    munmap(base, (data_pages + 2) * page);
}

}  // extern "C"
