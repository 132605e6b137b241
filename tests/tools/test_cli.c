/* The kiln command line treats bad input as normal input: every usage
 * mistake and every unreadable model ends with a non-zero exit status and
 * exactly one line on stderr, `kiln: error: ...` (2 for usage errors, 1 for
 * models that fail to load), and nothing on stdout.  Help and version go
 * to stdout with status 0.
 *
 * Each test runs the built binary (KILN_BINARY_DIR/kiln) with fork/exec,
 * its stdout and stderr redirected into files of a per-test temporary
 * folder, which also holds the hostile "models" (random bytes, a folder). */
#define _XOPEN_SOURCE 700 /* nftw */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char kiln_path[] = KILN_BINARY_DIR "/kiln";
static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st; (void)flag; (void)ftw;
  return remove(path);
}

static void setup(void) {
  strcpy(tmpdir, "/tmp/kiln-cli-XXXXXX");
  cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void) { nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

TestSuite(cli, .init = setup, .fini = teardown);

/* REL under the temporary folder, written into buf. */
static const char *tmp_path(const char *rel, char *buf, size_t size) {
  snprintf(buf, size, "%s/%s", tmpdir, rel);
  return buf;
}

typedef struct run_result {
  int code;        /* exit status, or 128 + signal */
  char out[16384]; /* stdout, NUL-terminated (truncated if longer) */
  char err[16384]; /* stderr */
} run_result;

static void slurp(const char *path, char *buf, size_t size) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot read %s", path);
  size_t n = fread(buf, 1, size - 1, f);
  buf[n] = 0;
  fclose(f);
}

/* Runs `kiln ARGS...` (args NULL-terminated) and collects its output. */
static void run_kiln(run_result *r, const char *const *args) {
  char out_path[128], err_path[128];
  tmp_path("stdout.txt", out_path, sizeof out_path);
  tmp_path("stderr.txt", err_path, sizeof err_path);
  const char *argv[32] = {kiln_path};
  int argc = 1;
  for (; args[argc - 1]; argc++) {
    cr_assert_lt(argc, 31);
    argv[argc] = args[argc - 1];
  }
  argv[argc] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int null = open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || null < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 || dup2(null, 0) < 0) _exit(126);
    execv(kiln_path, (char *const *)argv);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
  r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  cr_assert_neq(r->code, 127, "cannot execute %s", kiln_path);
  slurp(out_path, r->out, sizeof r->out);
  slurp(err_path, r->err, sizeof r->err);
}
#define KILN(r, ...) run_kiln((r), (const char *const[]){__VA_ARGS__, NULL})

/* Exit status `code`, nothing on stdout, and stderr exactly one line
 * "kiln: error: ..." containing `what`. */
static void expect_error(const run_result *r, int code, const char *what) {
  cr_assert_eq(r->code, code, "exit status %d, expected %d; stderr:\n%s", r->code, code, r->err);
  cr_assert_str_empty(r->out, "stdout should be empty, got:\n%s", r->out);
  cr_assert(!strncmp(r->err, "kiln: error: ", 13), "stderr does not start with 'kiln: error: ':\n%s", r->err);
  const char *nl = strchr(r->err, '\n');
  cr_assert(nl && nl[1] == 0, "stderr is not exactly one line:\n%s", r->err);
  cr_assert(strstr(r->err, what), "stderr lacks \"%s\":\n%s", what, r->err);
}

/* ---- usage errors: status 2 ------------------------------------------- */

Test(cli, no_arguments_is_a_one_line_usage_error) {
  run_result r;
  run_kiln(&r, (const char *const[]){NULL});
  expect_error(&r, 2, "kiln --help");
}

Test(cli, unknown_command) {
  run_result r;
  KILN(&r, "frobnicate");
  expect_error(&r, 2, "unknown command 'frobnicate'");
}

Test(cli, unknown_option) {
  run_result r;
  KILN(&r, "inspect", "--frobnicate", "model.onnx");
  expect_error(&r, 2, "unknown option '--frobnicate'");
}

Test(cli, inspect_without_a_model) {
  run_result r;
  KILN(&r, "inspect");
  expect_error(&r, 2, "no model given");
}

Test(cli, inspect_with_two_models) {
  run_result r;
  KILN(&r, "inspect", "a.onnx", "b.onnx");
  expect_error(&r, 2, "more than one model given ('a.onnx' and 'b.onnx')");
}

Test(cli, batch_zero_is_rejected) {
  run_result r;
  KILN(&r, "inspect", "--batch", "0", "model.onnx");
  expect_error(&r, 2, "--batch must be a positive integer, got '0'");
}

Test(cli, batch_not_a_number_is_rejected) {
  run_result r;
  KILN(&r, "inspect", "--batch", "abc", "model.onnx");
  expect_error(&r, 2, "--batch must be a positive integer, got 'abc'");
}

Test(cli, batch_without_a_value_is_rejected) {
  run_result r;
  KILN(&r, "inspect", "model.onnx", "--batch");
  expect_error(&r, 2, "--batch needs a value");
}

/* ---- models that do not load: status 1 --------------------------------- */

Test(cli, missing_model_file) {
  char path[128];
  run_result r;
  KILN(&r, "inspect", tmp_path("missing.onnx", path, sizeof path));
  expect_error(&r, 1, "missing.onnx: cannot open: No such file or directory");
}

Test(cli, directory_instead_of_a_model) {
  run_result r;
  KILN(&r, "inspect", tmpdir);
  expect_error(&r, 1, "not a regular file");
}

Test(cli, random_bytes_instead_of_a_model) {
  char path[128];
  unsigned char buf[2048];
  unsigned long long x = 0x2545f4914f6cdd1dull;
  for (size_t i = 0; i < sizeof buf; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    buf[i] = (unsigned char)x;
  }
  FILE *f = fopen(tmp_path("random.onnx", path, sizeof path), "wb");
  cr_assert(f);
  cr_assert_eq(fwrite(buf, 1, sizeof buf, f), sizeof buf);
  fclose(f);
  run_result r;
  KILN(&r, "inspect", "--json", path);
  expect_error(&r, 1, "random.onnx: not an ONNX model");
}

/* ---- help and version: status 0, stdout ---------------------------------- */

Test(cli, help_prints_usage_to_stdout) {
  run_result r;
  KILN(&r, "--help");
  cr_assert_eq(r.code, 0, "stderr:\n%s", r.err);
  cr_assert_str_empty(r.err);
  cr_assert(!strncmp(r.out, "usage: kiln ", 12), "stdout:\n%s", r.out);
  cr_assert(strstr(r.out, "inspect"), "the command list lacks inspect:\n%s", r.out);
}

Test(cli, inspect_help_prints_usage_to_stdout) {
  run_result r;
  KILN(&r, "inspect", "--help");
  cr_assert_eq(r.code, 0, "stderr:\n%s", r.err);
  cr_assert_str_empty(r.err);
  cr_assert(!strncmp(r.out, "usage: kiln inspect ", 20), "stdout:\n%s", r.out);
  cr_assert(strstr(r.out, "--batch N"), "stdout:\n%s", r.out);
}

Test(cli, help_command_describes_a_command) {
  run_result r;
  KILN(&r, "help", "inspect");
  cr_assert_eq(r.code, 0, "stderr:\n%s", r.err);
  cr_assert(!strncmp(r.out, "usage: kiln inspect ", 20), "stdout:\n%s", r.out);
}

Test(cli, version_mentions_llvm_and_cuda_target_status) {
  run_result r;
  KILN(&r, "--version");
  cr_assert_eq(r.code, 0, "stderr:\n%s", r.err);
  cr_assert_str_empty(r.err);
  cr_assert(!strncmp(r.out, "kiln ", 5), "stdout:\n%s", r.out);
  cr_assert(strstr(r.out, "LLVM 19."), "no LLVM version:\n%s", r.out);
  /* the GPU runtime has not run on a GPU: the version must not claim a tested GPU target */
  cr_assert(strstr(r.out, "not yet run on a real GPU"), "no CUDA status:\n%s", r.out);
  cr_assert(!strstr(r.out, "CUDA target available"), "claims a CUDA target:\n%s", r.out);
}

/* ---- the CUDA backend's targets ---------------------------------------- */

/* --target cuda without a CUDA driver (KILN_CUDA_DRIVER names a library
 * that does not exist, so this holds on GPU machines too): one error line
 * naming the target and the missing driver, nothing run. */
Test(cli, target_cuda_fails_with_one_line) {
  run_result r;
  setenv("KILN_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
  KILN(&r, "run", KILN_SOURCE_DIR "/models/resnet8_cifar.onnx", "--random", "--target", "cuda");
  unsetenv("KILN_CUDA_DRIVER");
  expect_error(&r, 1, "--target cuda: no CUDA driver");
}

Test(cli, target_unknown_is_a_usage_error) {
  run_result r;
  KILN(&r, "run", KILN_SOURCE_DIR "/models/resnet8_cifar.onnx", "--random", "--target", "tpu");
  expect_error(&r, 2, "--target must be cpu, cuda-host or cuda");
}

/* The classes of a run's top-5 line ("#4 (0.7856) #9 ..."), as "4 9 ...". */
static void top5_classes(const char *out, char *classes, size_t size) {
  const char *t = strstr(out, "top-5:");
  cr_assert(t, "no top-5 line:\n%s", out);
  size_t j = 0;
  for (const char *c = t; *c && *c != '\n' && j + 12 < size; c++)
    if (*c == '#') j += (size_t)snprintf(classes + j, size - j, "%ld ", strtol(c + 1, NULL, 10));
  classes[j] = 0;
}

/* --target cuda-host (GPU schedules: the convolutions' implicit GEMM sums
 * in another order) gives the LLVM run's top-5 classes on the same seeded
 * input; its values are checked against ONNX Runtime elsewhere
 * (conformance.cuda_host, models.zoo_run_cuda_host). */
Test(cli, target_cuda_host_matches_the_cpu_run) {
  run_result cpu, host;
  KILN(&cpu, "run", KILN_SOURCE_DIR "/models/resnet8_cifar.onnx", "--random");
  cr_assert_eq(cpu.code, 0, "stderr:\n%s", cpu.err);
  KILN(&host, "run", KILN_SOURCE_DIR "/models/resnet8_cifar.onnx", "--random", "--target", "cuda-host");
  cr_assert_eq(host.code, 0, "stderr:\n%s", host.err);
  char a[128], b[128];
  top5_classes(cpu.out, a, sizeof a);
  top5_classes(host.out, b, sizeof b);
  cr_assert_str_eq(a, b, "cuda-host's top-5 differs from the CPU run's:\n%s\n---\n%s", cpu.out, host.out);
}
