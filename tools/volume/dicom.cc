/* DICOM series for `kiln run --dicom DIR`, through GDCM (Debian
 * libgdcm-dev).  GDCM rather than DCMTK because Debian's GDCM decodes every
 * common image transfer syntax in one call (uncompressed, deflate, RLE,
 * JPEG baseline/extended/lossless via its IJG builds, JPEG-LS via CharLS,
 * JPEG 2000 via OpenJPEG), while DCMTK's open-source build has no JPEG 2000.
 * This is the only C++ translation unit in kiln: it exposes the C function
 * declared in volume.h and lets no exception escape.
 *
 * Geometry is taken from the tags themselves (never defaulted): every
 * slice must have the same series UID, rows, columns, ImageOrientationPatient
 * and PixelSpacing; slices are sorted by ImagePositionPatient projected on
 * the slice normal (row cosine x column cosine); positions must lie on one
 * line along the normal (no gantry tilt), with even steps (1% or 1 um): a
 * step that is a multiple of the usual one is reported as missing slices,
 * any other difference as inconsistent spacing.  The affine is DICOM's
 * (LPS) with x and y negated to RAS; voxel i runs along a row (column
 * index), j down the rows, k along the sorted slices. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gdcmAttribute.h>
#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmTrace.h>
#include <gdcmTransferSyntax.h>

/* ir/diag.h is C11; its one C-only keyword has a C++ spelling. */
#define _Noreturn [[noreturn]]
extern "C" {
#include "volume.h"
}
#undef _Noreturn

namespace {

struct slice {
  std::string file, uid;
  double ipp[3], iop[6], ps[2], thick, pos;
  long rows, cols;
  std::vector<float> px;
};

bool has(const gdcm::DataSet &ds, uint16_t g, uint16_t e) {
  const gdcm::Tag t(g, e);
  return ds.FindDataElement(t) && !ds.GetDataElement(t).IsEmpty();
}

bool supported(gdcm::TransferSyntax::TSType t) {
  using T = gdcm::TransferSyntax;
  switch (t) {
  case T::ImplicitVRLittleEndian: case T::ExplicitVRLittleEndian: case T::DeflatedExplicitVRLittleEndian:
  case T::ExplicitVRBigEndian: case T::JPEGBaselineProcess1: case T::JPEGExtendedProcess2_4:
  case T::JPEGExtendedProcess3_5: case T::JPEGLosslessProcess14: case T::JPEGLosslessProcess14_1:
  case T::JPEGLSLossless: case T::JPEGLSNearLossless: case T::JPEG2000Lossless: case T::JPEG2000:
  case T::RLELossless:
    return true;
  default:
    return false;
  }
}

/* The file meta group (0002,xxxx) is always explicit VR little endian
 * right after the 128-byte preamble and "DICM": read TransferSyntaxUID
 * from it by hand, so that a syntax GDCM cannot decode is named, and never
 * handed to GDCM.  Returns 0 for not DICOM, 1 with *uid set, -1 if the meta
 * group is malformed. */
int meta_transfer_syntax(const std::string &path, std::string *uid) {
  FILE *f = fopen(path.c_str(), "rb");
  if (!f) return 0;
  unsigned char b[4096];
  size_t n = fread(b, 1, sizeof b, f);
  fclose(f);
  if (n < 132 || memcmp(b + 128, "DICM", 4)) return 0;
  size_t at = 132;
  while (at + 8 <= n) {
    unsigned grp = b[at] | b[at + 1] << 8, el = b[at + 2] | b[at + 3] << 8;
    if (grp != 2) break;
    char vr[3] = {(char)b[at + 4], (char)b[at + 5], 0};
    size_t len, head = 8;
    if (!strcmp(vr, "OB") || !strcmp(vr, "OW") || !strcmp(vr, "UN") || !strcmp(vr, "SQ") || !strcmp(vr, "UT")) {
      if (at + 12 > n) return -1;
      len = (size_t)b[at + 8] | (size_t)b[at + 9] << 8 | (size_t)b[at + 10] << 16 | (size_t)b[at + 11] << 24;
      head = 12;
    } else {
      len = (size_t)(b[at + 6] | b[at + 7] << 8);
    }
    if (len > n || at + head + len > n) return -1;
    if (el == 0x0010) {
      uid->assign((const char *)b + at + head, len);
      while (!uid->empty() && (uid->back() == '\0' || uid->back() == ' ')) uid->pop_back();
      for (char c : *uid)
        if (!(c == '.' || (c >= '0' && c <= '9'))) return -1;
      return 1;
    }
    at += head + len;
  }
  return -1;
}

/* Reads one file into s; returns "" or what is wrong. */
std::string read_slice(const std::string &path, slice &s) {
  gdcm::ImageReader r;
  r.SetFileName(path.c_str());
  if (!r.Read()) return "not a readable DICOM image";
  const gdcm::File &file = r.GetFile();
  const gdcm::DataSet &ds = file.GetDataSet();
  const gdcm::TransferSyntax &ts = file.GetHeader().GetDataSetTransferSyntax();
  if (!supported(static_cast<gdcm::TransferSyntax::TSType>(ts))) {
    gdcm::Attribute<0x0002, 0x0010> u;
    u.SetFromDataSet(file.GetHeader());
    return std::string("unsupported transfer syntax ") + u.GetValue().c_str();
  }
  static const uint16_t need[][2] = {{0x0020, 0x000e}, {0x0020, 0x0032}, {0x0020, 0x0037},
                                     {0x0028, 0x0030}, {0x0028, 0x0010}, {0x0028, 0x0011}};
  static const char *names[] = {"SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient",
                                "PixelSpacing", "Rows", "Columns"};
  for (int k = 0; k < 6; k++)
    if (!has(ds, need[k][0], need[k][1])) return std::string("no ") + names[k];
  gdcm::Attribute<0x0020, 0x000e> uid;
  uid.SetFromDataSet(ds);
  s.uid = uid.GetValue().c_str();
  gdcm::Attribute<0x0020, 0x0032> ipp;
  ipp.SetFromDataSet(ds);
  gdcm::Attribute<0x0020, 0x0037> iop;
  iop.SetFromDataSet(ds);
  gdcm::Attribute<0x0028, 0x0030> ps;
  ps.SetFromDataSet(ds);
  if (ipp.GetNumberOfValues() != 3 || iop.GetNumberOfValues() != 6 || ps.GetNumberOfValues() != 2)
    return "malformed ImagePositionPatient, ImageOrientationPatient or PixelSpacing";
  for (int k = 0; k < 3; k++) s.ipp[k] = ipp.GetValue(k);
  for (int k = 0; k < 6; k++) s.iop[k] = iop.GetValue(k);
  for (int k = 0; k < 2; k++) s.ps[k] = ps.GetValue(k);
  for (double x : s.ipp) if (!std::isfinite(x)) return "ImagePositionPatient is not finite";
  for (double x : s.ps) if (!(x > 0) || !std::isfinite(x)) return "PixelSpacing is not positive";
  double nr = 0, nc = 0, dot = 0;
  for (int k = 0; k < 3; k++) {
    nr += s.iop[k] * s.iop[k];
    nc += s.iop[3 + k] * s.iop[3 + k];
    dot += s.iop[k] * s.iop[3 + k];
  }
  if (!(std::fabs(nr - 1) < 1e-2 && std::fabs(nc - 1) < 1e-2 && std::fabs(dot) < 1e-2))
    return "ImageOrientationPatient is not two orthogonal unit vectors";
  s.thick = 0;
  if (has(ds, 0x0018, 0x0050)) {
    gdcm::Attribute<0x0018, 0x0050> th;
    th.SetFromDataSet(ds);
    s.thick = th.GetValue();
  }
  double slope = 1, inter = 0;
  if (has(ds, 0x0028, 0x1053)) {
    gdcm::Attribute<0x0028, 0x1053> a;
    a.SetFromDataSet(ds);
    slope = a.GetValue();
  }
  if (has(ds, 0x0028, 0x1052)) {
    gdcm::Attribute<0x0028, 0x1052> a;
    a.SetFromDataSet(ds);
    inter = a.GetValue();
  }
  if (!std::isfinite(slope) || !std::isfinite(inter) || slope == 0) return "bad RescaleSlope/RescaleIntercept";
  const gdcm::Image &img = r.GetImage();
  if (img.GetNumberOfDimensions() == 3 && img.GetDimension(2) > 1) return "multi-frame images are not supported";
  const gdcm::PixelFormat &pf = img.GetPixelFormat();
  if (pf.GetSamplesPerPixel() != 1) return "not a greyscale image (SamplesPerPixel != 1)";
  s.cols = (long)img.GetDimension(0);
  s.rows = (long)img.GetDimension(1);
  if (s.rows < 1 || s.cols < 1 || s.rows > 65535 || s.cols > 65535) return "bad Rows/Columns";
  size_t count = (size_t)s.rows * (size_t)s.cols, len = img.GetBufferLength();
  std::vector<char> buf(len);
  if (!len || !img.GetBuffer(buf.data()))
    return std::string("cannot decode the pixel data (transfer syntax ") + ts.GetString() + ")";
  s.px.resize(count);
  using P = gdcm::PixelFormat;
  size_t bytes = 0;
  switch (pf.GetScalarType()) {
  case P::UINT8: case P::INT8: bytes = 1; break;
  case P::UINT16: case P::INT16: bytes = 2; break;
  case P::UINT32: case P::INT32: case P::FLOAT32: bytes = 4; break;
  case P::FLOAT64: bytes = 8; break;
  default: return "unsupported pixel format";
  }
  if (len < count * bytes) return "pixel data is shorter than Rows x Columns";
  for (size_t e = 0; e < count; e++) {
    const char *p = buf.data() + e * bytes;
    double x = 0;
    switch (pf.GetScalarType()) {
    case P::UINT8: x = (uint8_t)*p; break;
    case P::INT8: x = (int8_t)*p; break;
    case P::UINT16: { uint16_t y; memcpy(&y, p, 2); x = y; break; }
    case P::INT16: { int16_t y; memcpy(&y, p, 2); x = y; break; }
    case P::UINT32: { uint32_t y; memcpy(&y, p, 4); x = y; break; }
    case P::INT32: { int32_t y; memcpy(&y, p, 4); x = y; break; }
    case P::FLOAT32: { float y; memcpy(&y, p, 4); x = y; break; }
    case P::FLOAT64: { double y; memcpy(&y, p, 8); x = y; break; }
    default: break;
    }
    s.px[e] = (float)(slope * x + inter);
  }
  return "";
}

/* Debian's GDCM is built with assertions, and some malformed files (a
 * truncated one, for instance) reach an assert() that aborts.  Each file is
 * therefore parsed in a forked child that sends the slice back through a
 * pipe: a file that kills the parser is an error line, not a crash. */
bool put_all(int fd, const void *p, size_t n) {
  const char *c = (const char *)p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= (size_t)w;
  }
  return true;
}

bool get_all(int fd, void *p, size_t n) {
  char *c = (char *)p;
  while (n) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= (size_t)r;
  }
  return true;
}

bool put_str(int fd, const std::string &s) {
  uint64_t n = s.size();
  return put_all(fd, &n, sizeof n) && put_all(fd, s.data(), s.size());
}

bool get_str(int fd, std::string &s, uint64_t max) {
  uint64_t n;
  if (!get_all(fd, &n, sizeof n) || n > max) return false;
  s.resize(n);
  return get_all(fd, &s[0], n);
}

std::string read_slice_isolated(const std::string &path, slice &s) {
  int fd[2];
  if (pipe(fd) != 0) return "cannot create a pipe";
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]);
    close(fd[1]);
    return "cannot fork";
  }
  if (pid == 0) { /* the child: quiet (an assert prints), parse, send, exit */
    close(fd[0]);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 2);
    slice t;
    std::string why;
    try {
      why = read_slice(path, t);
    } catch (...) {
      why = "not a readable DICOM image";
    }
    if (!why.empty()) t.px.clear();
    uint64_t npx = t.px.size();
    bool ok = put_str(fd[1], why) && put_str(fd[1], t.uid) && put_all(fd[1], t.ipp, sizeof t.ipp) &&
              put_all(fd[1], t.iop, sizeof t.iop) && put_all(fd[1], t.ps, sizeof t.ps) &&
              put_all(fd[1], &t.thick, sizeof t.thick) && put_all(fd[1], &t.rows, sizeof t.rows) &&
              put_all(fd[1], &t.cols, sizeof t.cols) && put_all(fd[1], &npx, sizeof npx) &&
              put_all(fd[1], t.px.data(), npx * sizeof(float));
    _exit(ok ? 0 : 1);
  }
  close(fd[1]);
  std::string why;
  uint64_t npx = 0;
  bool ok = get_str(fd[0], why, 4096) && get_str(fd[0], s.uid, 1024) && get_all(fd[0], s.ipp, sizeof s.ipp) &&
            get_all(fd[0], s.iop, sizeof s.iop) && get_all(fd[0], s.ps, sizeof s.ps) &&
            get_all(fd[0], &s.thick, sizeof s.thick) && get_all(fd[0], &s.rows, sizeof s.rows) &&
            get_all(fd[0], &s.cols, sizeof s.cols) && get_all(fd[0], &npx, sizeof npx) &&
            npx == (uint64_t)s.rows * (uint64_t)s.cols * (why.empty() ? 1u : 0u);
  if (ok) {
    s.px.resize(npx);
    ok = get_all(fd[0], s.px.data(), npx * sizeof(float));
  }
  close(fd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "not a readable DICOM image (the DICOM parser failed on it)";
  return why;
}

/* File names come from the folder, not the user: control characters (a
 * newline would break the one-line error) are shown as '?'. */
int fail(kiln_diag *d, const std::string &where, const std::string &what) {
  std::string m = where + ": " + what;
  for (char &c : m)
    if ((unsigned char)c < 0x20 || c == 0x7f) c = '?';
  return kiln_error(d, nullptr, "%s", m.c_str());
}

int read_series(const char *dir, kiln_volume *v, kiln_diag *d) {
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return fail(d, dir, "not a folder");
  DIR *dd = opendir(dir);
  if (!dd) return fail(d, dir, "cannot read the folder");
  std::vector<std::string> names;
  while (struct dirent *e = readdir(dd)) {
    if (e->d_name[0] == '.') continue;
    std::string p = std::string(dir) + "/" + e->d_name;
    struct stat fs;
    if (stat(p.c_str(), &fs) == 0 && S_ISREG(fs.st_mode)) names.push_back(p);
    if (names.size() > 100000) break;
  }
  closedir(dd);
  if (names.size() > 100000) return fail(d, dir, "more than 100000 files: not one series");
  std::sort(names.begin(), names.end());
  std::vector<slice> sl;
  for (const std::string &p : names) {
    std::string ts;
    int m = meta_transfer_syntax(p, &ts);
    if (m == 0) continue;
    if (m < 0) return fail(d, p, "malformed DICOM file meta information");
    if (!supported(gdcm::TransferSyntax::GetTSType(ts.c_str())))
      return fail(d, p, "unsupported transfer syntax " + ts + " (supported: uncompressed, deflate, RLE, JPEG, JPEG-LS, JPEG 2000)");
    slice s;
    s.file = p;
    std::string why = read_slice_isolated(p, s);
    if (!why.empty()) return fail(d, p, why);
    sl.push_back(std::move(s));
  }
  if (sl.empty()) return fail(d, dir, "no DICOM files (with the DICM preamble) in the folder");
  const slice &a = sl[0];
  for (const slice &s : sl) {
    if (s.uid != a.uid)
      return fail(d, dir, "mixed series: " + a.file + " and " + s.file + " have different SeriesInstanceUIDs");
    if (s.rows != a.rows || s.cols != a.cols) return fail(d, s.file, "Rows/Columns differ from " + a.file);
    for (int k = 0; k < 6; k++)
      if (std::fabs(s.iop[k] - a.iop[k]) > 1e-4) return fail(d, s.file, "ImageOrientationPatient differs from " + a.file);
    for (int k = 0; k < 2; k++)
      if (std::fabs(s.ps[k] - a.ps[k]) > 1e-4 * a.ps[k]) return fail(d, s.file, "PixelSpacing differs from " + a.file);
  }
  double nrm[3] = {a.iop[1] * a.iop[5] - a.iop[2] * a.iop[4], a.iop[2] * a.iop[3] - a.iop[0] * a.iop[5],
                   a.iop[0] * a.iop[4] - a.iop[1] * a.iop[3]};
  for (slice &s : sl) s.pos = s.ipp[0] * nrm[0] + s.ipp[1] * nrm[1] + s.ipp[2] * nrm[2];
  std::sort(sl.begin(), sl.end(),
            [](const slice &x, const slice &y) { return x.pos < y.pos || (x.pos == y.pos && x.file < y.file); });
  size_t ns = sl.size();
  double step = 0;
  if (ns > 1) {
    std::vector<double> gaps;
    for (size_t k = 1; k < ns; k++) gaps.push_back(sl[k].pos - sl[k - 1].pos);
    std::vector<double> sorted = gaps;
    std::sort(sorted.begin(), sorted.end());
    double usual = sorted[sorted.size() / 2];
    for (size_t k = 1; k < ns; k++)
      if (gaps[k - 1] < 1e-3)
        return fail(d, dir, "two slices at the same position: " + sl[k - 1].file + " and " + sl[k].file);
    double tol = std::max(1e-3, 1e-2 * usual);
    char msg[512];
    for (size_t k = 1; k < ns; k++) {
      double g = gaps[k - 1];
      if (std::fabs(g - usual) <= tol) continue;
      double m = std::round(g / usual);
      if (m >= 2 && std::fabs(g - m * usual) <= tol * m)
        snprintf(msg, sizeof msg, "missing slices: a gap of %.4g mm (%d missing at %.4g mm) between %s and %s", g,
                 (int)m - 1, usual, sl[k - 1].file.c_str(), sl[k].file.c_str());
      else
        snprintf(msg, sizeof msg, "inconsistent slice spacing: %.4g mm between %s and %s, %.4g mm elsewhere", g,
                 sl[k - 1].file.c_str(), sl[k].file.c_str(), usual);
      return fail(d, dir, msg);
    }
    /* Positions on one line along the normal (no tilt, no shift). */
    for (size_t k = 1; k < ns; k++)
      for (int c = 0; c < 3; c++) {
        double off = sl[k].ipp[c] - sl[0].ipp[c] - (sl[k].pos - sl[0].pos) * nrm[c];
        if (std::fabs(off) > tol)
          return fail(d, sl[k].file, "ImagePositionPatient is off the slice normal (gantry tilt or a shifted slice)");
      }
    step = (sl[ns - 1].pos - sl[0].pos) / (double)(ns - 1);
  } else {
    step = a.thick > 0 ? a.thick : 1;
  }
  if ((double)a.rows * (double)a.cols * (double)ns > (double)KILN_VOLUME_MAX_VOXELS)
    return fail(d, dir, "too many voxels (more than 2^31)");
  size_t plane = (size_t)a.rows * (size_t)a.cols;
  v->data = (float *)malloc(plane * ns * sizeof(float));
  if (!v->data) return fail(d, dir, "out of memory");
  for (size_t k = 0; k < ns; k++) memcpy(v->data + k * plane, sl[k].px.data(), plane * sizeof(float));
  v->n[0] = a.cols;
  v->n[1] = a.rows;
  v->n[2] = (int64_t)ns;
  /* LPS: x = IPP + i*dc*row_cos + j*dr*col_cos + k*step*normal; RAS negates x, y. */
  for (int r = 0; r < 3; r++) {
    double sign = r < 2 ? -1 : 1;
    v->affine[r][0] = sign * a.iop[r] * a.ps[1];
    v->affine[r][1] = sign * a.iop[3 + r] * a.ps[0];
    v->affine[r][2] = sign * nrm[r] * step;
    v->affine[r][3] = sign * sl[0].ipp[r];
  }
  v->affine[3][0] = v->affine[3][1] = v->affine[3][2] = 0;
  v->affine[3][3] = 1;
  return 0;
}

} // namespace

extern "C" int kiln_volume_read_dicom(const char *dir, kiln_volume *v, kiln_diag *d) {
  memset(v, 0, sizeof *v);
  gdcm::Trace::SetDebug(false);
  gdcm::Trace::SetWarning(false);
  gdcm::Trace::SetError(false);
  try {
    int rc = read_series(dir, v, d);
    if (rc) kiln_volume_free(v);
    return rc;
  } catch (const std::exception &e) {
    kiln_volume_free(v);
    return kiln_error(d, nullptr, "%s: cannot read the DICOM series: %s", dir, e.what());
  } catch (...) {
    kiln_volume_free(v);
    return kiln_error(d, nullptr, "%s: cannot read the DICOM series", dir);
  }
}
