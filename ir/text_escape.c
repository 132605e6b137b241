/* Display and JSON escaping of model strings (see text_escape.h for the
 * rules).  Both walk the string one unit at a time: an ASCII byte, a
 * well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or one byte of invalid UTF-8.  A unit is escaped
 * or kept whole, so a cut (kiln_display_escape into a full buffer) never
 * splits an escape or a character. */
#include "text_escape.h"

#include <stdint.h>
#include <string.h>

/* Length (2..4) of the well-formed UTF-8 sequence at p, with its code point
 * in *cp; 0 when p does not start one.  p is NUL-terminated, and NUL is no
 * continuation byte, so the look-ahead stops at the end. */
static int utf8_decode(const unsigned char *p, uint32_t *cp) {
  unsigned char c = p[0];
  int len;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;       /* overlong */
    else if (c == 0xED) hi = 0x9F;  /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;       /* overlong */
    else if (c == 0xF4) hi = 0x8F;  /* above U+10FFFF */
  } else return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (int i = 2; i < len; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  uint32_t v = c & (0x7F >> len);
  for (int i = 1; i < len; i++) v = (v << 6) | (p[i] & 0x3F);
  *cp = v;
  return len;
}

/* Characters that are well-formed but act instead of showing. */
static int is_active(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) ||      /* C1 controls (CSI is U+009B) */
         cp == 0x2028 || cp == 0x2029 ||    /* line / paragraph separator */
         (cp >= 0x202A && cp <= 0x202E) ||  /* bidi embeddings, overrides */
         (cp >= 0x2066 && cp <= 0x2069);    /* bidi isolates */
}

/* The display form of the unit at p into out (at most 16 bytes + NUL);
 * returns the bytes of p consumed and sets *cols to its width. */
static size_t display_unit(const unsigned char *p, char out[17], int *cols) {
  static const char hex[] = "0123456789abcdef";
  uint32_t cp;
  int len = 1, esc;
  if (*p == '\\') { memcpy(out, "\\\\", 3); *cols = 2; return 1; }
  if (*p >= 0x20 && *p < 0x7F) { out[0] = (char)*p; out[1] = 0; *cols = 1; return 1; }
  if (*p < 0x80) esc = 1; /* control byte or DEL */
  else if ((len = utf8_decode(p, &cp)) == 0) { len = 1; esc = 1; }
  else esc = is_active(cp);
  if (!esc) { memcpy(out, p, (size_t)len); out[len] = 0; *cols = 1; return (size_t)len; }
  for (int i = 0; i < len; i++) {
    out[4 * i] = '\\'; out[4 * i + 1] = 'x';
    out[4 * i + 2] = hex[p[i] >> 4]; out[4 * i + 3] = hex[p[i] & 15];
  }
  out[4 * len] = 0;
  *cols = 4 * len;
  return (size_t)len;
}

int kiln_put_display(FILE *f, const char *s) {
  int total = 0, cols;
  char out[17];
  if (!s) return 0;
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    p += display_unit(p, out, &cols);
    fputs(out, f);
    total += cols;
  }
  return total;
}

void kiln_put_display_pad(FILE *f, const char *s, int width) {
  for (int n = kiln_put_display(f, s); n < width; n++) fputc(' ', f);
}

size_t kiln_display_escape(char *dst, size_t size, const char *s) {
  size_t n = 0, used = 0;
  int cols;
  char out[17];
  if (size == 0) return 0;
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  while (p[used]) {
    size_t take = display_unit(p + used, out, &cols), len = strlen(out);
    if (len >= size - n) break;
    memcpy(dst + n, out, len);
    n += len;
    used += take;
  }
  dst[n] = 0;
  return used;
}

void kiln_put_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;) {
    uint32_t cp;
    int len;
    if (*p == '"' || *p == '\\') { fprintf(f, "\\%c", *p); p++; }
    else if (*p < 0x20 || *p == 0x7F) { fprintf(f, "\\u%04x", *p); p++; }
    else if (*p < 0x80) { fputc(*p, f); p++; }
    else if ((len = utf8_decode(p, &cp)) == 0) { fputs("\\ufffd", f); p++; }
    else {
      if (is_active(cp)) fprintf(f, "\\u%04x", (unsigned)cp); /* all are in the BMP */
      else fwrite(p, 1, (size_t)len, f);
      p += len;
    }
  }
  fputc('"', f);
}
