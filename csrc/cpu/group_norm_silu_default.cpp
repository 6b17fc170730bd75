// Baseline-ISA build of the group_norm_silu inner loops (shapflow::cpu::DEFAULT): used when the
// CPU (or ATEN_CPU_CAPABILITY=default) rules out AVX2, and on non-x86 hosts.
#define CPU_CAPABILITY DEFAULT
#include "group_norm_silu_kernels.h"
