/* `weights "FILE"` follows the containment rule of ONNX external data
 * (kiln_path_contained): a network may read weights from its own folder
 * (subfolders and symlinks that stay inside included), never through an
 * absolute path, a ".." component or a symlink leading out.  Each escape
 * points at a real, loadable weights file, so only the rule can stop it. */
#include "dsl_test.h" /* first: it sets _XOPEN_SOURCE */

#include <limits.h>
#include <sys/stat.h>
#include "frontend/onnx/kiln_onnx.h"

static char outside[64];

static void setup(void) {
  dsl_setup();
  strcpy(outside, "/tmp/kiln-dsl-outside-XXXXXX");
  cr_assert(mkdtemp(outside), "mkdtemp: %s", strerror(errno));
}

static void teardown(void) {
  dsl_teardown();
  nftw(outside, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(dsl_weights_paths, .init = setup, .fini = teardown);

#define NET_WITH(seed, file) \
  "network n {\n  seed " seed "\n  weights \"" file "\"\n  input x: [1, 3, 8, 8]\n  c: conv(4, 3x3)\n}\n"

/* Exports a seed-1 conv network's weights to dir/rel; returns c.weight[0..4). */
static void export_weights(const char *dir, const char *rel, float first[4]) {
  cr_assert(load("network n {\n  seed 1\n  input x: [1, 3, 8, 8]\n  c: conv(4, 3x3)\n}\n"), "%s", d.msg);
  memcpy(first, value_named("c.weight")->data, 4 * sizeof *first);
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  cr_assert_eq(kiln_onnx_export(g, path, &d), 0, "%s", d.msg);
}

Test(dsl_weights_paths, relative_file_in_a_subfolder_loads) {
  float want[4];
  char sub[128];
  snprintf(sub, sizeof sub, "%s/sub", tmpdir);
  cr_assert_eq(mkdir(sub, 0700), 0);
  export_weights(tmpdir, "sub/w.onnx", want);
  load_ok(NET_WITH("2", "sub/w.onnx"));
  cr_assert(!memcmp(value_named("c.weight")->data, want, sizeof want), "the weights come from sub/w.onnx, not seed 2");
  load_ok(NET_WITH("2", "./sub/./w.onnx"));
  cr_assert(!memcmp(value_named("c.weight")->data, want, sizeof want));
}

Test(dsl_weights_paths, symlink_that_stays_inside_loads) {
  float want[4];
  export_weights(tmpdir, "w.onnx", want);
  char link[128];
  snprintf(link, sizeof link, "%s/alias.onnx", tmpdir);
  cr_assert_eq(symlink("w.onnx", link), 0);
  load_ok(NET_WITH("2", "alias.onnx"));
  cr_assert(!memcmp(value_named("c.weight")->data, want, sizeof want));
}

Test(dsl_weights_paths, absolute_path_is_refused) {
  float w[4];
  export_weights(outside, "private.onnx", w);
  char src[512], file[128];
  snprintf(file, sizeof file, "%s/private.onnx", outside);
  snprintf(src, sizeof src, NET_WITH("2", "%s"), file);
  load_fails(src, "net.kiln:3:11: ", "is absolute: weights must be in the network's folder");
}

Test(dsl_weights_paths, dotdot_is_refused) {
  float w[4];
  export_weights(outside, "private.onnx", w);
  char src[512], file[128];
  snprintf(file, sizeof file, "../%s/private.onnx", strrchr(outside, '/') + 1); /* tmpdir and outside share /tmp */
  snprintf(src, sizeof src, NET_WITH("2", "%s"), file);
  load_fails(src, "net.kiln:3:11: ", "leaves the network's folder ('..')");
  /* also when the '..' would come back inside */
  export_weights(tmpdir, "w.onnx", w);
  snprintf(file, sizeof file, "sub/../w.onnx");
  snprintf(src, sizeof src, NET_WITH("2", "%s"), file);
  load_fails(src, "net.kiln:3:11: ", "leaves the network's folder");
}

Test(dsl_weights_paths, symlink_out_of_the_folder_is_refused) {
  float w[4];
  export_weights(outside, "private.onnx", w);
  char link[128], target[128];
  snprintf(target, sizeof target, "%s/private.onnx", outside);
  snprintf(link, sizeof link, "%s/w.onnx", tmpdir);
  cr_assert_eq(symlink(target, link), 0);
  load_fails(NET_WITH("2", "w.onnx"), "net.kiln:3:11: ", "resolves outside the network's folder");
  /* a symlinked folder leading out */
  snprintf(link, sizeof link, "%s/dir", tmpdir);
  cr_assert_eq(symlink(outside, link), 0);
  load_fails(NET_WITH("2", "dir/private.onnx"), "net.kiln:3:11: ", "resolves outside the network's folder");
}

Test(dsl_weights_paths, missing_and_empty) {
  load_fails(NET_WITH("2", "nope.onnx"), "net.kiln:3:11: ", "weights file 'nope.onnx' cannot be opened: No such file");
  load_fails(NET_WITH("2", ""), "net.kiln:3:11: ", "unknown format");
}

/* The shared rule itself, as ONNX external data uses it. */
Test(dsl_weights_paths, kiln_path_contained) {
  char out[PATH_MAX];
  float w[4];
  export_weights(tmpdir, "w.onnx", w);
  cr_assert_eq(kiln_path_contained(tmpdir, "w.onnx", out), KILN_PATH_OK);
  cr_assert(strstr(out, "/w.onnx"));
  cr_assert_eq(kiln_path_contained(tmpdir, "/etc/passwd", out), KILN_PATH_ABSOLUTE);
  cr_assert_eq(kiln_path_contained(tmpdir, "..", out), KILN_PATH_DOTDOT);
  cr_assert_eq(kiln_path_contained(tmpdir, "a/..\\b", out), KILN_PATH_DOTDOT);
  cr_assert_eq(kiln_path_contained(tmpdir, "", out), KILN_PATH_EMPTY);
  cr_assert_eq(kiln_path_contained(tmpdir, "missing", out), KILN_PATH_MISSING);
  char link[128];
  snprintf(link, sizeof link, "%s/up", tmpdir);
  cr_assert_eq(symlink("/", link), 0);
  cr_assert_eq(kiln_path_contained(tmpdir, "up/etc", out), KILN_PATH_OUTSIDE);
}
