// CPU kernels of shapflow::group_norm_silu (forward and backward): one task per (sample, group),
// parallel with at::parallel_for, inner loops vectorised with `omp simd` and a polynomial exp.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "../checks.h"

namespace shapflow {
namespace {

// exp(x) for float with Cephes' degree-5 polynomial (rel. error ~2e-7); branch-free so loops vectorise.
inline float exp_fast(float x) {
  x = std::fmin(std::fmax(x, -87.0f), 88.0f);
  const float t = x * 1.44269504088896341f;
  const int32_t k = static_cast<int32_t>(t + (t >= 0.0f ? 0.5f : -0.5f));
  const float kf = static_cast<float>(k);
  const float r = (x - kf * 0.693359375f) + kf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (k + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline double exp_fast(double x) { return std::exp(x); }

template <typename T>
inline T sigmoid(T z) { return T(1) / (T(1) + exp_fast(-z)); }

// Mean and reciprocal std of one group's D contiguous values (two passes, double across rows).
template <typename T>
void group_moments(const T* xg, int64_t rows, int64_t HW, double eps, double& mean, double& rstd) {
  double sum = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = xg + r * HW;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < HW; ++i) s += p[i];
    sum += s;
  }
  const double D = static_cast<double>(rows * HW);
  mean = sum / D;
  const T m = static_cast<T>(mean);
  double sq = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = xg + r * HW;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < HW; ++i) s += (p[i] - m) * (p[i] - m);
    sq += s;
  }
  rstd = 1.0 / std::sqrt(sq / D + eps);
}

template <typename T>
void forward_kernel(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                    int64_t N, int64_t C, int64_t HW, int64_t G, double eps, bool silu) {
  const int64_t Cg = C / G;
  at::parallel_for(0, N * G, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ng = begin; ng < end; ++ng) {
      const int64_t n = ng / G, c0 = (ng % G) * Cg;
      const T* xg = x + ng * Cg * HW;
      T* yg = y + ng * Cg * HW;
      double mu, rs;
      group_moments(xg, Cg, HW, eps, mu, rs);
      mean[ng] = static_cast<T>(mu);
      rstd[ng] = static_cast<T>(rs);
      for (int64_t c = 0; c < Cg; ++c) {
        const T a = static_cast<T>(gamma[n * C + c0 + c] * rs);
        const T b = static_cast<T>(beta[n * C + c0 + c] - mu * a);
        const T* p = xg + c * HW;
        T* q = yg + c * HW;
        if (silu) {
#pragma omp simd
          for (int64_t i = 0; i < HW; ++i) { const T z = p[i] * a + b; q[i] = z * sigmoid(z); }
        } else {
#pragma omp simd
          for (int64_t i = 0; i < HW; ++i) q[i] = p[i] * a + b;
        }
      }
    }
  });
}

// Backward of one group: dz = dy * act'(z) is kept in `dz` (D values); then
// dx = rstd * (dz * gamma - mean(dz * gamma) - xhat * mean(dz * gamma * xhat)).
template <typename T>
void backward_group(const T* dy, const T* x, const T* gamma, const T* beta, T mu, T rs, int64_t Cg,
                    int64_t HW, bool silu, T* dx, T* dgamma, T* dbeta, std::vector<T>& dz) {
  double g1 = 0.0, g2 = 0.0;
  for (int64_t c = 0; c < Cg; ++c) {
    const T a = gamma[c] * rs, b = beta[c] - mu * a;
    const T* p = x + c * HW;
    const T* d = dy + c * HW;
    T* e = dz.data() + c * HW;
    T s_dz = 0, s_dzx = 0;
#pragma omp simd reduction(+ : s_dz, s_dzx)
    for (int64_t i = 0; i < HW; ++i) {
      const T z = p[i] * a + b;
      T v = d[i];
      if (silu) { const T sg = sigmoid(z); v = v * sg * (T(1) + z * (T(1) - sg)); }
      e[i] = v;
      s_dz += v;
      s_dzx += v * (p[i] - mu) * rs;
    }
    dgamma[c] = s_dzx;
    dbeta[c] = s_dz;
    g1 += static_cast<double>(gamma[c]) * s_dz;
    g2 += static_cast<double>(gamma[c]) * s_dzx;
  }
  const double D = static_cast<double>(Cg * HW);
  const T m1 = static_cast<T>(g1 / D), m2 = static_cast<T>(g2 / D);
  for (int64_t c = 0; c < Cg; ++c) {
    const T gc = gamma[c];
    const T* p = x + c * HW;
    const T* e = dz.data() + c * HW;
    T* q = dx + c * HW;
#pragma omp simd
    for (int64_t i = 0; i < HW; ++i) q[i] = rs * (e[i] * gc - m1 - (p[i] - mu) * rs * m2);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& x, const at::Tensor& gamma,
                                                           const at::Tensor& beta, int64_t num_groups,
                                                           double eps, bool silu) {
  const auto [N, C, HW] = check_group_norm_inputs(x, gamma, beta, num_groups);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "group_norm_silu (CPU): x must be float32 or float64, got ", x.scalar_type());
  auto y = at::empty_like(x);
  auto mean = at::empty({N, num_groups}, x.options());
  auto rstd = at::empty({N, num_groups}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_silu_cpu", [&] {
    forward_kernel<scalar_t>(x.const_data_ptr<scalar_t>(), gamma.const_data_ptr<scalar_t>(),
                             beta.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                             mean.mutable_data_ptr<scalar_t>(), rstd.mutable_data_ptr<scalar_t>(), N, C, HW,
                             num_groups, eps, silu);
  });
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
    const at::Tensor& mean, const at::Tensor& rstd, int64_t num_groups, bool silu) {
  const auto [N, C, HW] = check_group_norm_inputs(x, gamma, beta, num_groups);
  TORCH_CHECK(grad_y.sizes() == x.sizes() && grad_y.scalar_type() == x.scalar_type(),
              "group_norm_silu_backward: grad_y must match x in shape and dtype");
  TORCH_CHECK(mean.numel() == N * num_groups && rstd.numel() == N * num_groups &&
                  mean.scalar_type() == x.scalar_type() && rstd.scalar_type() == x.scalar_type(),
              "group_norm_silu_backward: mean and rstd must be (N, num_groups) in x's dtype");
  const auto dy = grad_y.contiguous();
  const auto mean_c = mean.contiguous(), rstd_c = rstd.contiguous();
  auto dx = at::empty_like(x);
  auto dgamma = at::empty({N, C}, x.options());
  auto dbeta = at::empty({N, C}, x.options());
  const int64_t G = num_groups, Cg = C / G;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_silu_backward_cpu", [&] {
    const auto* xp = x.const_data_ptr<scalar_t>();
    const auto* dyp = dy.const_data_ptr<scalar_t>();
    const auto* gp = gamma.const_data_ptr<scalar_t>();
    const auto* bp = beta.const_data_ptr<scalar_t>();
    const auto* mp = mean_c.const_data_ptr<scalar_t>();
    const auto* rp = rstd_c.const_data_ptr<scalar_t>();
    auto* dxp = dx.mutable_data_ptr<scalar_t>();
    auto* dgp = dgamma.mutable_data_ptr<scalar_t>();
    auto* dbp = dbeta.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, N * G, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> dz(static_cast<size_t>(Cg * HW));
      for (int64_t ng = begin; ng < end; ++ng) {
        const int64_t off = ng * Cg * HW, coff = (ng / G) * C + (ng % G) * Cg;
        backward_group<scalar_t>(dyp + off, xp + off, gp + coff, bp + coff, mp[ng], rp[ng], Cg, HW, silu,
                                 dxp + off, dgp + coff, dbp + coff, dz);
      }
    });
  });
  return {dx, dgamma, dbeta};
}

}  // namespace

TORCH_LIBRARY_IMPL(shapflow, CPU, m) {
  m.impl("group_norm_silu", &forward_cpu);
  m.impl("group_norm_silu_backward", &backward_cpu);
}

}  // namespace shapflow
