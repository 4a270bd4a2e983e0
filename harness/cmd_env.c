#include "harness/cli.h"
#include "trainer/device.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdlib.h>
#include <sys/stat.h>

static const char env_usage[] =
    "Usage: dfpo env [--json]\n"
    "\n"
    "Prints what this machine offers to dfpo: CPU threads, the BLAS in use,\n"
    "whether the CUDA backend was compiled in and whether a device is usable\n"
    "(if not, the driver's own reason), and the cache folder.\n"
    "\n"
    "Options:\n"
    "  --json      print the same facts as one JSON object\n"
    "  --device D  also resolve a compute device as the engine commands do:\n"
    "              cpu, cuda (fails with the driver's reason when no device is\n"
    "              usable) or auto (cuda when usable, else the CPU, saying why)\n"
    "  -h, --help  show this help\n";

int cmd_env(int argc, char **argv) {
  static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                       {"device", required_argument, NULL, 'd'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int json = 0, c;
  const char *device = NULL;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'j':
      json = 1;
      break;
    case 'd':
      device = optarg;
      break;
    case 'h':
      fputs(env_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("env", argc, argv, c);
    }
  }
  if (optind < argc)
    return cli_usage_error("env", "unexpected argument '%s'", argv[optind]);

  if (device) {
    int rc = cli_device("env", device);
    if (rc)
      return rc;
  }
  ops_env_info info;
  ops_env_probe(&info);
  char cache[4096];
  dfpo_err err;
  dfpo_err_clear(&err);
  int have_cache = dfpo_cache_dir(cache, sizeof cache, &err) == DFPO_OK;
  struct stat st;
  int cache_exists = have_cache && stat(cache, &st) == 0 && S_ISDIR(st.st_mode);

  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", DFPO_VERSION);
    cJSON_AddNumberToObject(o, "cpu_threads", info.cpu_threads);
    cJSON_AddNumberToObject(o, "online_cpus", info.online_cpus);
    cJSON_AddStringToObject(o, "blas", info.blas);
    cJSON_AddNumberToObject(o, "blas_threads", info.blas_threads);
    cJSON_AddNumberToObject(o, "cpu_kernels_bits", info.cpu_isa);
    cJSON_AddBoolToObject(o, "cuda_compiled", info.cuda_compiled);
    if (info.cuda_compiled)
      cJSON_AddStringToObject(o, "cuda_runtime", info.cuda_runtime);
    cJSON_AddNumberToObject(o, "cuda_devices", info.cuda_devices);
    if (info.cuda_devices)
      cJSON_AddStringToObject(o, "cuda_device", info.cuda_device);
    else
      cJSON_AddStringToObject(o, "cuda_reason", info.cuda_reason);
    if (have_cache)
      cJSON_AddStringToObject(o, "cache_dir", cache);
    else
      cJSON_AddStringToObject(o, "cache_error", err.msg);
    cJSON_AddBoolToObject(o, "cache_exists", cache_exists);
    if (device)
      cJSON_AddStringToObject(o, "device", ops_device_name(ops_current_device()));
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s)
      return DFPO_ERUNTIME;
    printf("%s\n", s);
    free(s);
    return DFPO_OK;
  }

  printf("dfpo %s\n", DFPO_VERSION);
  printf("CPU threads:  %d (OpenMP), %d online processors\n", info.cpu_threads, info.online_cpus);
  printf("BLAS:         %s, called with %d thread; each product is split over the OpenMP "
         "threads\n",
         info.blas, info.blas_threads);
  printf("CPU kernels:  %s (DFPO_CPU_ISA=512|256|0 caps the width)\n",
         info.cpu_isa >= 512 ? "AVX-512 (own products, attention, GELU and sampling kernels)"
         : info.cpu_isa >= 256
             ? "AVX2 + FMA (own decoding products, attention and GELU kernels; other products "
               "through OpenBLAS)"
             : "portable code and OpenBLAS only");
  if (info.cuda_compiled) {
    printf("CUDA:         compiled in (runtime %s)\n", info.cuda_runtime);
    if (info.cuda_devices)
      printf("CUDA device:  %d usable; device 0: %s\n", info.cuda_devices, info.cuda_device);
    else
      printf("CUDA device:  none usable: %s\n", info.cuda_reason);
  } else {
    printf("CUDA:         not compiled in: %s\n", info.cuda_reason);
  }
  if (device)
    printf("Device:       %s (asked for %s)\n", ops_device_name(ops_current_device()), device);
  if (have_cache)
    printf("Cache folder: %s%s\n", cache, cache_exists ? "" : " (not created yet)");
  else
    printf("Cache folder: none: %s\n", err.msg);
  return DFPO_OK;
}
