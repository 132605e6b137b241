/* Command-line training options (tools/train_opts.h): a table of the
 * numeric options, and the few with their own syntax.  Everything a user
 * types is checked here, so the train pass sees only sane values. */
#include "train_opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char kiln_train_opts_usage[] =
    "training (with --train):\n"
    "  --loss ce|bce|mse|dice      the loss (default ce: softmax cross-entropy over axis 1)\n"
    "  --optimizer NAME            sgd (default), momentum, nesterov, rmsprop, adam, adamw\n"
    "  --momentum X                momentum/nesterov (default 0.9)\n"
    "  --beta1 X --beta2 X         adam/adamw (default 0.9, 0.999)\n"
    "  --rho X                     rmsprop's smoothing (default 0.99)\n"
    "  --eps X                     adam/adamw/rmsprop (default 1e-8)\n"
    "  --weight-decay X            L2 (adamw: decoupled), default 0\n"
    "  --clip-norm X               clip gradients to global L2 norm X\n"
    "  --freeze PATTERN            keep parameters matching PATTERN (fnmatch) fixed; repeatable\n"
    "  --frozen-bn-inference       BatchNorm whose scale and bias are frozen stays in inference mode\n"
    "  --class-weights W0,W1,...   per-class weights of the cross-entropy\n"
    "  --loss-output NAME          the network output the loss reads (default: the first;\n"
    "                              `inspect` also takes --output NAME)\n"
    "  --new-classes K             replace the classifier head by a new one for K classes\n"
    "  --head-seed S               seed of the new head's initialisation (default 0)\n";

void kiln_cli_train_init(kiln_cli_train *o) {
  *o = (kiln_cli_train){.t = kiln_train_defaults()};
  o->t.freeze = o->freeze;
}

void kiln_cli_train_free(kiln_cli_train *o) {
  free(o->class_weights);
  o->class_weights = NULL;
  o->t.class_weights = NULL;
}

/* A finite number in [lo, hi] (open at lo when lo_open). */
static int number(const char *cmd, const char *opt, const char *s, double lo, double hi, int lo_open, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
    return kiln_cli_usage_error(cmd, "%s: expected a number in %s%g, %g], got '%s'", opt, lo_open ? "(" : "[", lo, hi,
                                s);
  *out = v;
  return 0;
}

static int pick(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

static int class_weights(const char *cmd, const char *s, kiln_cli_train *o) {
  int n = 1;
  for (const char *p = s; *p; p++) n += *p == ',';
  if (n > KILN_TRAIN_MAX_CLASSES) return kiln_cli_usage_error(cmd, "--class-weights: more than %d values", KILN_TRAIN_MAX_CLASSES);
  float *w = malloc((size_t)n * sizeof *w);
  if (!w) return kiln_cli_usage_error(cmd, "--class-weights: out of memory");
  const char *p = s;
  for (int k = 0; k < n; k++) {
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || (*end && *end != ',') || errno || !isfinite(v) || v < 0 || v > 1e30) {
      free(w);
      return kiln_cli_usage_error(cmd, "--class-weights: expected comma-separated non-negative numbers, got '%s'", s);
    }
    w[k] = (float)v;
    p = *end ? end + 1 : end;
  }
  free(o->class_weights);
  o->class_weights = w;
  o->t.class_weights = w;
  o->t.nclass_weights = n;
  return 0;
}

int kiln_train_option(const char *cmd, int argc, char **argv, int *i, kiln_cli_train *o) {
  static const char *const losses[] = {"ce", "bce", "mse", "dice"};
  static const kiln_loss_kind loss_kind[] = {KILN_LOSS_CE, KILN_LOSS_BCE, KILN_LOSS_MSE, KILN_LOSS_DICE};
  static const char *const optims[] = {"sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"};
  static const kiln_optim_kind optim_kind[] = {KILN_OPTIM_SGD,     KILN_OPTIM_MOMENTUM, KILN_OPTIM_NESTEROV,
                                               KILN_OPTIM_RMSPROP, KILN_OPTIM_ADAM,     KILN_OPTIM_ADAMW};
  /* numeric options: name, field, range */
  struct num { const char *name; double *field; double lo, hi; int lo_open; } nums[] = {
      {"--momentum", &o->t.momentum, 0, 1, 0},       {"--beta1", &o->t.beta1, 0, 1, 0},
      {"--beta2", &o->t.beta2, 0, 1, 0},             {"--rho", &o->t.rho, 0, 1, 0},
      {"--eps", &o->t.eps, 0, 1, 1},                 {"--weight-decay", &o->t.weight_decay, 0, 1e6, 0},
      {"--clip-norm", &o->t.clip_norm, 0, 1e30, 1},
  };
  const char *a = argv[*i];
  if (!strcmp(a, "--frozen-bn-inference")) {
    o->t.frozen_bn_inference = 1;
    o->given = 1;
    return 0;
  }
  int known = !strcmp(a, "--loss") || !strcmp(a, "--optimizer") || !strcmp(a, "--freeze") ||
              !strcmp(a, "--class-weights") || !strcmp(a, "--loss-output") ||
              (!o->own_output && !strcmp(a, "--output")) || !strcmp(a, "--new-classes") ||
              !strcmp(a, "--head-seed");
  for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) known |= !strcmp(a, nums[k].name);
  if (!known) return 1;
  if (*i + 1 >= argc) return kiln_cli_usage_error(cmd, "%s needs a value", a);
  const char *v = argv[++*i];
  o->given = 1;
  for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++)
    if (!strcmp(a, nums[k].name)) return number(cmd, a, v, nums[k].lo, nums[k].hi, nums[k].lo_open, nums[k].field) ? 2 : 0;
  if (!strcmp(a, "--loss")) {
    int k = pick(v, losses, 4);
    if (k < 0) return kiln_cli_usage_error(cmd, "--loss must be ce, bce, mse or dice, got '%s'", v);
    o->t.loss = loss_kind[k];
  } else if (!strcmp(a, "--optimizer")) {
    int k = pick(v, optims, 6);
    if (k < 0)
      return kiln_cli_usage_error(cmd, "--optimizer must be sgd, momentum, nesterov, rmsprop, adam or adamw, got '%s'", v);
    o->t.optimizer = optim_kind[k];
  } else if (!strcmp(a, "--freeze")) {
    if (o->t.nfreeze >= KILN_TRAIN_MAX_FREEZE)
      return kiln_cli_usage_error(cmd, "--freeze given more than %d times", KILN_TRAIN_MAX_FREEZE);
    o->freeze[o->t.nfreeze++] = v;
  } else if (!strcmp(a, "--class-weights")) {
    return class_weights(cmd, v, o) ? 2 : 0;
  } else if (!strcmp(a, "--output") || !strcmp(a, "--loss-output")) {
    o->t.output = v;
  } else if (!strcmp(a, "--new-classes")) {
    int64_t k = kiln_cli_parse_count(v);
    if (k < 1 || k > KILN_TRAIN_MAX_CLASSES)
      return kiln_cli_usage_error(cmd, "--new-classes: expected a count 1..%d, got '%s'", KILN_TRAIN_MAX_CLASSES, v);
    o->t.new_classes = k;
  } else { /* --head-seed */
    char *end;
    errno = 0;
    unsigned long long s = strtoull(v, &end, 10);
    if (!*v || *end || errno || v[0] == '-') return kiln_cli_usage_error(cmd, "--head-seed: expected an unsigned integer, got '%s'", v);
    o->t.head_seed = (uint64_t)s;
  }
  return 0;
}
