/* checkpoint.bin (see train_ckpt.h).  Layout, little-endian as this host:
 *   "KILNCKP1"  u64 layout  i64 epoch  i64 step  u64 prng[4]  f64 best_val
 *   i64 bad_epochs  i64 nmetrics  f64 metrics[nmetrics * 7]
 *   i64 state_bytes  state bytes  u64 FNV-1a 64 of everything before it.
 * Every count is checked against the file's size before anything is
 * allocated, so a corrupt or hostile file is one error line. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train_ckpt.h"

static const char MAGIC[8] = {'K', 'I', 'L', 'N', 'C', 'K', 'P', '1'};

uint64_t kiln_fnv64(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

int kiln_write_durable(const char *path, const void *data, size_t len, kiln_diag *d) {
  char tmp[4096];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
    return kiln_error(d, NULL, "%s: path too long", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return kiln_error(d, NULL, "%s: cannot write: %s", path, strerror(errno));
  const char *p = data;
  size_t left = len;
  int ok = 1;
  while (ok && left) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) { p += w; left -= (size_t)w; }
  }
  ok = ok && fsync(fd) == 0;
  int e = errno;
  ok = (close(fd) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    if (ok) e = errno;
    unlink(tmp);
    return kiln_error(d, NULL, "%s: cannot write: %s", path, strerror(e));
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) { fsync(dfd); close(dfd); } /* the rename itself made durable */
  return 0;
}

typedef struct wbuf { unsigned char *p; size_t len; } wbuf;
static void put(wbuf *b, const void *v, size_t n) { memcpy(b->p + b->len, v, n); b->len += n; }

int kiln_ckpt_write(const char *path, const kiln_ckpt *c, kiln_diag *d) {
  size_t size = 8 + 8 * 3 + 8 * 4 + 8 * 3 + (size_t)c->nmetrics * KILN_CKPT_METRICS * 8 + 8 + (size_t)c->state_bytes + 8;
  wbuf b = {malloc(size), 0};
  if (!b.p) return kiln_error(d, NULL, "%s: out of memory", path);
  put(&b, MAGIC, 8);
  put(&b, &c->layout, 8);
  put(&b, &c->epoch, 8);
  put(&b, &c->step, 8);
  put(&b, c->prng, 32);
  put(&b, &c->best_val, 8);
  put(&b, &c->bad_epochs, 8);
  put(&b, &c->nmetrics, 8);
  if (c->nmetrics) put(&b, c->metrics, (size_t)c->nmetrics * KILN_CKPT_METRICS * 8);
  put(&b, &c->state_bytes, 8);
  if (c->state_bytes) put(&b, c->state, (size_t)c->state_bytes);
  uint64_t h = kiln_fnv64(KILN_FNV64_INIT, b.p, b.len);
  put(&b, &h, 8);
  int rc = kiln_write_durable(path, b.p, b.len, d);
  free(b.p);
  return rc;
}

void kiln_ckpt_free(kiln_ckpt *c) {
  free(c->metrics);
  free(c->state);
  memset(c, 0, sizeof *c);
}

typedef struct rbuf { const unsigned char *p; size_t len, at; } rbuf;
static int get(rbuf *b, void *v, size_t n) {
  if (b->len - b->at < n) return -1;
  memcpy(v, b->p + b->at, n);
  b->at += n;
  return 0;
}

int kiln_ckpt_read(const char *path, uint64_t layout, kiln_ckpt *c, kiln_diag *d) {
  memset(c, 0, sizeof *c);
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_error(d, NULL, "%s: cannot open: %s", path, strerror(errno));
  unsigned char *data = NULL;
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return kiln_error(d, NULL, "%s: cannot read", path); }
  if (n < 8 + 8 * 10 + 8 || (unsigned long)n > ((size_t)1 << 40)) { fclose(f); return kiln_error(d, NULL, "%s: not a kiln checkpoint (wrong size)", path); }
  if (!(data = malloc((size_t)n))) { fclose(f); return kiln_error(d, NULL, "%s: out of memory", path); }
  int ok = fread(data, 1, (size_t)n, f) == (size_t)n;
  fclose(f);
  rbuf b = {data, (size_t)n - 8, 0};
  uint64_t h;
  memcpy(&h, data + n - 8, 8);
  if (!ok) { free(data); return kiln_error(d, NULL, "%s: cannot read", path); }
  if (memcmp(data, MAGIC, 8)) { free(data); return kiln_error(d, NULL, "%s: not a kiln checkpoint", path); }
  if (h != kiln_fnv64(KILN_FNV64_INIT, data, (size_t)n - 8)) { free(data); return kiln_error(d, NULL, "%s: corrupt (checksum mismatch)", path); }
  b.at = 8;
  get(&b, &c->layout, 8);
  get(&b, &c->epoch, 8);
  get(&b, &c->step, 8);
  get(&b, c->prng, 32);
  get(&b, &c->best_val, 8);
  get(&b, &c->bad_epochs, 8);
  if (get(&b, &c->nmetrics, 8) || c->nmetrics < 0 || (uint64_t)c->nmetrics > (b.len - b.at) / (KILN_CKPT_METRICS * 8)) goto corrupt;
  if (c->layout != layout) {
    free(data);
    return kiln_error(d, NULL, "%s: was written for another model or other training options (the state layout differs); "
                      "resume with the same model and options", path);
  }
  if (c->nmetrics && !(c->metrics = malloc((size_t)c->nmetrics * KILN_CKPT_METRICS * 8))) goto oom;
  if (c->nmetrics) get(&b, c->metrics, (size_t)c->nmetrics * KILN_CKPT_METRICS * 8);
  if (get(&b, &c->state_bytes, 8) || c->state_bytes < 0 || (uint64_t)c->state_bytes != b.len - b.at) goto corrupt;
  if (c->state_bytes && !(c->state = malloc((size_t)c->state_bytes))) goto oom;
  if (c->state_bytes) get(&b, c->state, (size_t)c->state_bytes);
  if (c->epoch < 0 || c->step < 0 || c->nmetrics != c->epoch) goto corrupt;
  free(data);
  return 0;
corrupt:
  free(data);
  kiln_ckpt_free(c);
  return kiln_error(d, NULL, "%s: corrupt checkpoint (inconsistent sizes)", path);
oom:
  free(data);
  kiln_ckpt_free(c);
  return kiln_error(d, NULL, "%s: out of memory", path);
}
