/* Output folders of `kiln compile` and `kiln emit-c`: checked before any
 * work, filled as a temporary sibling folder, renamed into place at the
 * end, removed on failure, so a failed run leaves nothing behind. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "tensor_io.h"

int kiln_out_dir_check(const char *dir, kiln_diag *d) {
  struct stat st;
  if (stat(dir, &st) != 0) return 0; /* will be created */
  if (!S_ISDIR(st.st_mode)) return kiln_error(d, NULL, "%s: exists and is not a folder", dir);
  DIR *dd = opendir(dir);
  if (!dd) return kiln_error(d, NULL, "%s: cannot read: %s", dir, strerror(errno));
  struct dirent *e;
  int empty = 1;
  while ((e = readdir(dd))) empty &= !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
  closedir(dd);
  return empty ? 0 : kiln_error(d, NULL, "%s: output folder is not empty (kiln will not overwrite it)", dir);
}

int kiln_out_dir_begin(const char *dir, char *tmp, size_t size, kiln_diag *d) {
  snprintf(tmp, size, "%s.kiln-tmp.%ld", dir, (long)getpid());
  if (mkdir(tmp, 0777) != 0) {
    kiln_error(d, NULL, "%s: cannot create: %s", tmp, strerror(errno));
    tmp[0] = 0;
    return -1;
  }
  return 0;
}

int kiln_out_dir_write(const char *tmp, const char *name, const void *data, size_t len, kiln_diag *d) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", tmp, name);
  return kiln_write_atomic(path, data, len, d);
}

int kiln_out_dir_commit(const char *dir, char *tmp, kiln_diag *d) {
  rmdir(dir); /* an empty folder may be replaced */
  if (rename(tmp, dir) != 0) return kiln_error(d, NULL, "%s: cannot create: %s", dir, strerror(errno));
  tmp[0] = 0;
  return 0;
}

void kiln_out_dir_abort(char *tmp) {
  if (!tmp[0]) return;
  DIR *dd = opendir(tmp);
  if (dd) {
    struct dirent *e;
    char path[4096];
    while ((e = readdir(dd)))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
        snprintf(path, sizeof path, "%s/%s", tmp, e->d_name);
        unlink(path);
      }
    closedir(dd);
  }
  rmdir(tmp);
  tmp[0] = 0;
}

int kiln_c_identifier_ok(const char *s) {
  static const char *const reserved[] = {"auto", "break", "case", "char", "const", "continue", "default", "do",
      "double", "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
      "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union",
      "unsigned", "void", "volatile", "while", "main", "kiln"};
  if (strlen(s) > 64) return 0;
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
    if (!strcmp(s, reserved[i])) return 0;
  if (!s[0] || (!isalpha((unsigned char)s[0]) && s[0] != '_')) return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '_') return 0;
  return 1;
}

void kiln_c_identifier_from(char *out, size_t size, const char *name, int upper) {
  size_t j = 0;
  if (!isalpha((unsigned char)name[0]) && name[0] != '_' && j + 1 < size) out[j++] = '_';
  for (const char *c = name; *c && j + 1 < size; c++)
    out[j++] = isalnum((unsigned char)*c) ? (char)(upper ? toupper((unsigned char)*c) : *c) : '_';
  out[j] = 0;
}

void kiln_file_name_for(char *out, size_t size, const char *name) {
  size_t n = strlen(name), j = 0;
  int safe = n >= 1 && n <= 200 && name[0] != '.';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c < 0x20 || c == 0x7f || c == '/' || c == '\\') safe = 0;
  }
  if (safe && n < size) { memcpy(out, name, n + 1); return; }
  size_t cut = n < 100 ? n : 100;
  while (cut > 0 && cut < n && ((unsigned char)name[cut] & 0xc0) == 0x80) cut--; /* not inside a UTF-8 sequence */
  for (size_t i = 0; i < cut && j + 16 < size; i++) {
    unsigned char c = (unsigned char)name[i];
    out[j++] = c < 0x20 || c == 0x7f || c == '/' || c == '\\' || (i == 0 && c == '.') ? '_' : (char)c;
  }
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)name[i]) * 16777619u;
  snprintf(out + j, size - j, "%sh%08x", j ? "_" : "", (unsigned)h);
}

void kiln_c_prefix_for(const char *model_path, char *prefix, size_t size) {
  const char *base = strrchr(model_path, '/');
  char stem[128];
  snprintf(stem, sizeof stem, "%s", base ? base + 1 : model_path);
  char *dot = strrchr(stem, '.');
  if (dot && dot != stem) *dot = 0;
  kiln_c_identifier_from(prefix, size, stem, 0);
  /* file-scope names starting with '_' are reserved: "__x" -> "x", "9lives" -> "m_9lives" */
  size_t skip = strspn(prefix, "_");
  memmove(prefix, prefix + skip, strlen(prefix + skip) + 1);
  if (prefix[0] >= '0' && prefix[0] <= '9' && strlen(prefix) + 3 < size) {
    memmove(prefix + 2, prefix, strlen(prefix) + 1);
    memcpy(prefix, "m_", 2);
  }
  if (!kiln_c_identifier_ok(prefix)) snprintf(prefix, size, "model");
}
