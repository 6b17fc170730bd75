// Device-independent parts of shapflow::group_norm_silu, in C++ so that no Python runs per call:
//   - its Autograd kernel: a torch::autograd::Function that runs the CPU/CUDA forward below autograd
//     and whose backward calls group_norm_silu_backward (mean/rstd are non-differentiable);
//   - group_norm_silu_affine (CompositeImplicitAutograd): a plain GroupNorm passes its (C,) weight/bias
//     straight through as gamma/beta (no op runs before the kernel); with the time embedding's
//     scale/shift it folds them into per-sample (N, C) gamma/beta with ATen ops, which give the
//     folding's autograd; then it calls group_norm_silu.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

namespace shapflow {
namespace {

using Stats3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

// group_norm_silu through the dispatcher (from below autograd: the CPU or CUDA kernel; from
// above: the Autograd kernel below).
Stats3 call_forward(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, int64_t num_groups,
                    double eps, bool silu) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("shapflow::group_norm_silu", "")
                             .typed<Stats3(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
                                           double, bool)>();
  return op.call(x, gamma, beta, num_groups, eps, silu);
}

Stats3 call_backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& gamma,
                     const at::Tensor& beta, const at::Tensor& mean, const at::Tensor& rstd, int64_t num_groups,
                     bool silu) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("shapflow::group_norm_silu_backward", "")
                             .typed<Stats3(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
                                           bool)>();
  return op.call(grad_y, x, gamma, beta, mean, rstd, num_groups, silu);
}

// Autograd of group_norm_silu: gradients of x, gamma and beta (all from one backward kernel; dgamma,
// dbeta have gamma's shape).
class GroupNormSiluFunction : public torch::autograd::Function<GroupNormSiluFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& gamma, const at::Tensor& beta,
                                                int64_t num_groups, double eps, bool silu) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [y, mean, rstd] = call_forward(x, gamma, beta, num_groups, eps, silu);
    ctx->save_for_backward({x, gamma, beta, mean, rstd});
    ctx->saved_data["num_groups"] = num_groups;
    ctx->saved_data["silu"] = silu;
    ctx->mark_non_differentiable({mean, rstd});
    ctx->set_materialize_grads(false);  // mean/rstd never get a gradient: no zero tensors for them
    return {y, mean, rstd};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    if (!grads[0].defined()) return torch::autograd::variable_list(6);  // y unused: no gradient at all
    const auto saved = ctx->get_saved_variables();
    auto [dx, dgamma, dbeta] =
        call_backward(grads[0].contiguous(), saved[0], saved[1], saved[2], saved[3], saved[4],
                      ctx->saved_data["num_groups"].toInt(), ctx->saved_data["silu"].toBool());
    return {dx, dgamma, dbeta, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

Stats3 group_norm_silu_autograd(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                                int64_t num_groups, double eps, bool silu) {
  // Nothing to differentiate (sampling under no_grad, frozen inputs): run the kernel without building
  // a graph node, which costs as much as a small call's kernel.
  if (!at::GradMode::is_enabled() || !(x.requires_grad() || gamma.requires_grad() || beta.requires_grad())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_forward(x, gamma, beta, num_groups, eps, silu);
  }
  auto out = GroupNormSiluFunction::apply(x, gamma, beta, num_groups, eps, silu);
  return {out[0], out[1], out[2]};
}

// The tensor in `t` when one was passed (Python None arrives as nullopt or an undefined tensor).
const at::Tensor* given(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? &*t : nullptr;
}

// Checks that an optional affine input holds `numel` values (weight/bias: C; scale/shift: N * C).
// Sizes are SymInts so that torch.compile can trace the op with dynamic shapes.
void check_numel(const at::Tensor* t, const c10::SymInt& numel, const char* name, const char* shape) {
  if (t == nullptr) return;
  TORCH_SYM_CHECK(t->sym_numel().sym_eq(numel), "group_norm_silu_affine: ", name, " must hold ", shape, " = ",
                  numel, " values, got shape ", t->sym_sizes());
}

// act(GroupNorm(x) * (1 + scale) + shift) with gamma = weight * (1 + scale) and
// beta = bias * (1 + scale) + shift, (C,) without scale/shift, else (N, C); x: (N, C, *spatial) -> y.
at::Tensor group_norm_silu_affine(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                  const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                  const std::optional<at::Tensor>& shift, int64_t num_groups, double eps,
                                  bool silu) {
  TORCH_CHECK(x.dim() >= 2, "group_norm_silu_affine: x must be (N, C, *spatial), got ", x.dim(), " dims");
  const c10::SymInt N = x.sym_size(0), C = x.sym_size(1);
  const at::Tensor *w = given(weight), *b = given(bias), *s = given(scale), *t = given(shift);
  check_numel(w, C, "weight", "C");
  check_numel(b, C, "bias", "C");
  check_numel(s, N * C, "scale", "N * C");
  check_numel(t, N * C, "shift", "N * C");
  const auto per_channel = [&](const at::Tensor* v) { return v->dim() == 1 ? *v : v->reshape_symint({C}); };
  const auto per_sample = [&](const at::Tensor* v) { return v->reshape_symint({N, C}); };
  at::Tensor gamma, beta;
  if (s == nullptr && t == nullptr) {  // plain GroupNorm: the (C,) weight/bias go in as they are
    gamma = w != nullptr ? per_channel(w) : at::ones_symint({C}, x.options());
    beta = b != nullptr ? per_channel(b) : at::zeros_symint({C}, x.options());
  } else if (s != nullptr) {
    const auto one_plus = per_sample(s) + 1;
    gamma = w != nullptr ? one_plus * per_channel(w) : one_plus;
    if (b != nullptr) {
      beta = t != nullptr ? at::addcmul(per_sample(t), one_plus, per_channel(b)) : one_plus * per_channel(b);
    } else {
      beta = t != nullptr ? per_sample(t) : at::zeros_symint({N, C}, x.options());
    }
  } else {  // shift only: gamma is shared, but beta is per sample and both must have one shape
    gamma = w != nullptr ? per_channel(w).expand_symint({N, C}) : at::ones_symint({N, C}, x.options());
    beta = b != nullptr ? per_sample(t) + per_channel(b) : per_sample(t);
  }
  return std::get<0>(call_forward(x.contiguous(), gamma.contiguous(), beta.contiguous(), num_groups, eps, silu));
}

}  // namespace

TORCH_LIBRARY_IMPL(shapflow, Autograd, m) {
  m.impl("group_norm_silu", &group_norm_silu_autograd);
}

TORCH_LIBRARY_IMPL(shapflow, CompositeImplicitAutograd, m) {
  m.impl("group_norm_silu_affine", &group_norm_silu_affine);
}

}  // namespace shapflow
