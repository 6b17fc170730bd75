// AVX-512 (F, BW, VL, DQ) + FMA build of the group_norm_silu inner loops
// (shapflow::cpu::AVX512), compiled for that ISA by a target pragma because the extension's flags
// are baseline x86-64; the front only calls it where at::get_cpu_capability() and the CPU both
// allow AVX-512. See group_norm_silu_isa_prelude.h for why the non-vec headers come first.
#include "group_norm_silu.h"

#if SHAPFLOW_CPU_X86_ISA_BUILDS
#include "group_norm_silu_isa_prelude.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")
// g++ does not predefine the ISA macros under a target pragma; sleef.h declares its AVX-512
// functions (used by Vectorized<double>::exp) only when they are set.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
#ifndef __AVX512F__
#define __AVX512F__ 1
#endif
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
// Warnings g++ 12 gives on ATen's vec headers in this setting, none about code that runs here:
// maybe-uninitialized on exp_u20's intrinsics (their _mm*_undefined_* operands); psabi on the
// function-pointer thunks of BFloat16 lambdas, which g++ makes without the target options (never
// emitted: nothing here uses BFloat16); ignored-attributes on the vector type in the check below.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic ignored "-Wignored-attributes"
#include "group_norm_silu_kernels.h"

static_assert(std::is_convertible_v<at::vec::AVX512::Vectorized<float>, __m512>,
              "group_norm_silu_avx512.cpp: at::vec was not built for AVX-512 (included earlier?)");
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
