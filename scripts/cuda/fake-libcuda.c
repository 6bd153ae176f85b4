/* A stand-in NVIDIA driver for checking the CUDA wheel's start-up on a machine without a GPU
 * (scripts/check-cuda-wheel.sh): the seven driver API calls the start-up check makes, answering
 * as a driver for CUDA $FAKE_CUDA_VERSION (default 12060 = 12.6) with $FAKE_CUDA_DEVICES T4s
 * (default 2). Nothing else is exported, so anything beyond the check fails to resolve.
 *
 *   gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o libcuda.so.1 fake-libcuda.c
 */
#include <stdlib.h>
#include <string.h>

static int env_int(const char *name, int fallback) {
    const char *value = getenv(name);
    return value ? atoi(value) : fallback;
}

int cuDriverGetVersion(int *version) { *version = env_int("FAKE_CUDA_VERSION", 12060); return 0; }
int cuInit(unsigned flags) { (void)flags; return 0; }
int cuDeviceGetCount(int *count) { *count = env_int("FAKE_CUDA_DEVICES", 2); return 0; }
int cuDeviceGet(int *device, int ordinal) { *device = ordinal; return 0; }
int cuDeviceGetName(char *name, int length, int device) {
    (void)device;
    strncpy(name, "Tesla T4 (fake driver)", (size_t)length - 1);
    name[length - 1] = 0;
    return 0;
}
int cuDeviceGetAttribute(int *value, int attribute, int device) {
    (void)device;
    /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76 */
    *value = attribute == 75 ? 7 : attribute == 76 ? 5 : 0;
    return 0;
}
int cuDeviceTotalMem_v2(size_t *bytes, int device) { (void)device; *bytes = (size_t)15 << 30; return 0; }
