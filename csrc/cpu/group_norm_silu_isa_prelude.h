// Headers that ATen's vec headers include, other than the vec headers themselves and sleef.h.
//
// An ISA build (group_norm_silu_avx2.cpp, group_norm_silu_avx512.cpp) includes this file BEFORE
// its `#pragma GCC target`, so that the inline functions of the C++ library, c10 and ATen are
// compiled for baseline x86-64 there: the linker keeps one copy of each such inline function for
// the whole extension, and that copy must not contain AVX2/AVX-512 instructions. Only what lies
// in the ISA's own namespaces (at::vec::AVX2, at::vec::AVX512, shapflow::cpu::AVX2, ...) is
// compiled for the ISA. (List from `g++ -H` on <ATen/cpu/vec/vec.h> for torch 2.13.)
#pragma once

#include <x86intrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <ostream>
#include <type_traits>

#include <ATen/NumericUtils.h>
#include <ATen/native/Math.h>
#include <ATen/native/cpu/zmath.h>
#include <ATen/native/quantized/AffineQuantizerBase.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16-math.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>
#include <c10/util/Load.h>
#include <c10/util/TypeCast.h>
#include <c10/util/copysign.h>
#include <c10/util/irange.h>
#include <c10/util/qint32.h>
#include <c10/util/qint8.h>
#include <c10/util/quint8.h>

