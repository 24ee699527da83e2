/*
 * A stand-in libnvidia-ml.so.1 for tests: implements the NVML entry points the
 * exporter calls, with readings taken from the file named by FAKE_NVML_STATE.
 * The file is read again on every call, so a test changes the GPUs' state
 * (utilization, a lost GPU, nvmlInit failing) by rewriting it.
 *
 * State file, one directive a line:
 *   init RC                      return code of nvmlInit (0 = success)
 *   gpu IDX UTIL MEM_USED MEM_TOTAL POWER_MW LOST MIG UUID NAME...
 *   mig PARENT_IDX SLOT GI CI MEM_USED MEM_TOTAL UUID
 *   energy IDX MILLIJOULES       the GPU's total energy counter (without it: NOT_SUPPORTED)
 *   hang MS                      every call on a device first blocks MS milliseconds (a GPU falling off the bus)
 * LOST=1 makes every call on that GPU return NVML_ERROR_GPU_IS_LOST (15).
 * UTIL=-1 or POWER_MW=-1 make those calls return NVML_ERROR_NOT_SUPPORTED (3).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_GPUS 16
#define MAX_MIG 7
#define OK 0
#define ERR_UNINITIALIZED 1
#define ERR_INVALID_ARGUMENT 2
#define ERR_NOT_SUPPORTED 3
#define ERR_INSUFFICIENT_SIZE 7
#define ERR_NOT_FOUND 6
#define ERR_GPU_IS_LOST 15

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;

struct mig { int present, gi, ci; unsigned long long used, total; char uuid[96]; int parent; };
struct gpu {
    int present, util, lost, mig_mode, has_energy; long power_mw; unsigned long long energy_mj;
    unsigned long long used, total; char uuid[96]; char name[96];
    struct mig migs[MAX_MIG];
};

static struct gpu gpus[MAX_GPUS];
static int gpu_count;
static int init_rc;
static int hang_ms;
static int initialized;

static void load_state(void) {
    memset(gpus, 0, sizeof gpus);
    gpu_count = 0;
    init_rc = 0;
    hang_ms = 0;
    const char *path = getenv("FAKE_NVML_STATE");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int idx, slot, gi, ci, util, lost, mig, consumed = 0;
        long power;
        unsigned long long used, total;
        char uuid[96];
        if (sscanf(line, "init %d", &init_rc) == 1) continue;
        if (sscanf(line, "hang %d", &hang_ms) == 1) continue;
        if (sscanf(line, "gpu %d %d %llu %llu %ld %d %d %95s %n", &idx, &util, &used, &total, &power, &lost,
                   &mig, uuid, &consumed) == 8 && idx >= 0 && idx < MAX_GPUS) {
            struct gpu *g = &gpus[idx];
            g->present = 1; g->util = util; g->used = used; g->total = total; g->power_mw = power;
            g->lost = lost; g->mig_mode = mig;
            snprintf(g->uuid, sizeof g->uuid, "%s", uuid);
            snprintf(g->name, sizeof g->name, "%s", line + consumed);
            g->name[strcspn(g->name, "\r\n")] = 0;
            if (idx + 1 > gpu_count) gpu_count = idx + 1;
            continue;
        }
        unsigned long long energy;
        if (sscanf(line, "energy %d %llu", &idx, &energy) == 2 && idx >= 0 && idx < MAX_GPUS) {
            gpus[idx].has_energy = 1; gpus[idx].energy_mj = energy;
            continue;
        }
        if (sscanf(line, "mig %d %d %d %d %llu %llu %95s", &idx, &slot, &gi, &ci, &used, &total, uuid) == 7
            && idx >= 0 && idx < MAX_GPUS && slot >= 0 && slot < MAX_MIG) {
            struct mig *m = &gpus[idx].migs[slot];
            m->present = 1; m->gi = gi; m->ci = ci; m->used = used; m->total = total; m->parent = idx;
            snprintf(m->uuid, sizeof m->uuid, "%s", uuid);
        }
    }
    fclose(f);
}

/* Handles point into the tables; a MIG handle points at a struct mig. */
static int is_mig(void *h) {
    char *p = (char *)h;
    return p >= (char *)gpus && p < (char *)(gpus + MAX_GPUS) &&
           ((p - (char *)gpus) % sizeof(struct gpu)) != 0;
}

static int check_gpu(void *h, struct gpu **out) {
    if (!initialized) return ERR_UNINITIALIZED;
    load_state();
    if (hang_ms > 0) {
        struct timespec pause = {hang_ms / 1000, (long)(hang_ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
    }
    if (is_mig(h)) {
        struct mig *m = (struct mig *)h;
        if (gpus[m->parent].lost) return ERR_GPU_IS_LOST;
        *out = NULL;
        return OK;
    }
    struct gpu *g = (struct gpu *)h;
    if (g < gpus || g >= gpus + MAX_GPUS || !g->present) return ERR_INVALID_ARGUMENT;
    if (g->lost) return ERR_GPU_IS_LOST;
    *out = g;
    return OK;
}

int nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    load_state();
    if (init_rc != 0) return init_rc;
    initialized = 1;
    return OK;
}
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlInit(void) { return nvmlInitWithFlags(0); }
int nvmlShutdown(void) { if (!initialized) return ERR_UNINITIALIZED; initialized = 0; return OK; }

const char *nvmlErrorString(int rc) {
    switch (rc) {
    case OK: return "Success";
    case ERR_UNINITIALIZED: return "Uninitialized";
    case ERR_INVALID_ARGUMENT: return "Invalid Argument";
    case ERR_NOT_SUPPORTED: return "Not Supported";
    case ERR_NOT_FOUND: return "Not Found";
    case 9: return "Driver Not Loaded";
    case ERR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!initialized) return ERR_UNINITIALIZED;
    snprintf(version, length, "550.54.15");
    return OK;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialized) return ERR_UNINITIALIZED;
    load_state();
    *count = (unsigned int)gpu_count;
    return OK;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    if (!initialized) return ERR_UNINITIALIZED;
    load_state();
    if (index >= MAX_GPUS || !gpus[index].present) return ERR_INVALID_ARGUMENT;
    *device = &gpus[index];
    return OK;
}

static int copy_string(char *dst, unsigned int length, const char *src) {
    if (strlen(src) + 1 > length) return ERR_INSUFFICIENT_SIZE;
    snprintf(dst, length, "%s", src);
    return OK;
}

int nvmlDeviceGetName(void *h, char *name, unsigned int length) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    return copy_string(name, length, g ? g->name : gpus[((struct mig *)h)->parent].name);
}

int nvmlDeviceGetUUID(void *h, char *uuid, unsigned int length) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    return copy_string(uuid, length, g ? g->uuid : ((struct mig *)h)->uuid);
}

int nvmlDeviceGetIndex(void *h, unsigned int *index) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    *index = (unsigned int)(g ? g - gpus : ((struct mig *)h)->parent);
    return OK;
}

int nvmlDeviceGetMemoryInfo(void *h, nvmlMemory_t *memory) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    unsigned long long used = g ? g->used : ((struct mig *)h)->used;
    unsigned long long total = g ? g->total : ((struct mig *)h)->total;
    memory->total = total; memory->used = used; memory->free = total - used;
    return OK;
}

int nvmlDeviceGetUtilizationRates(void *h, nvmlUtilization_t *utilization) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    if (!g || g->util < 0 || g->mig_mode) return ERR_NOT_SUPPORTED;
    utilization->gpu = (unsigned int)g->util; utilization->memory = 0;
    return OK;
}

int nvmlDeviceGetPowerUsage(void *h, unsigned int *milliwatts) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    if (!g || g->power_mw < 0) return ERR_NOT_SUPPORTED;
    *milliwatts = (unsigned int)g->power_mw;
    return OK;
}

int nvmlDeviceGetTotalEnergyConsumption(void *h, unsigned long long *millijoules) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    if (!g || !g->has_energy) return ERR_NOT_SUPPORTED;
    *millijoules = g->energy_mj;
    return OK;
}

int nvmlDeviceGetMigMode(void *h, unsigned int *current, unsigned int *pending) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    if (!g) return ERR_NOT_SUPPORTED;
    *current = *pending = (unsigned int)g->mig_mode;
    return OK;
}

int nvmlDeviceGetMaxMigDeviceCount(void *h, unsigned int *count) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    *count = g && g->mig_mode ? MAX_MIG : 0;
    return OK;
}

int nvmlDeviceGetMigDeviceHandleByIndex(void *h, unsigned int index, void **mig) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    if (!g || index >= MAX_MIG) return ERR_INVALID_ARGUMENT;
    if (!g->migs[index].present) return ERR_NOT_FOUND;
    *mig = &g->migs[index];
    return OK;
}

int nvmlDeviceGetGpuInstanceId(void *h, unsigned int *id) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    if (g) return ERR_NOT_SUPPORTED;
    *id = (unsigned int)((struct mig *)h)->gi;
    return OK;
}

int nvmlDeviceGetComputeInstanceId(void *h, unsigned int *id) {
    struct gpu *g; int rc = check_gpu(h, &g); if (rc) return rc;
    if (g) return ERR_NOT_SUPPORTED;
    *id = (unsigned int)((struct mig *)h)->ci;
    return OK;
}
