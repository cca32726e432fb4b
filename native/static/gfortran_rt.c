/* The two GNU Fortran runtime entry points that Debian's static OpenBLAS (its reference LAPACK)
 * calls, for the self-contained build of the addon. libgfortran.a cannot go into a shared object
 * (its I/O units use local-exec TLS), and the rest of it is never reached: LAPACK concatenates
 * routine names for its error messages (xerbla) and times itself with ETIME (SECOND/DSECND).
 * Both are compiled hidden, so they never interpose on a libgfortran loaded by something else. */
#include <stddef.h>
#include <string.h>
#include <sys/resource.h>

#define HIDDEN __attribute__((visibility("hidden")))

/* CHARACTER concatenation: dest(1:destlen) = s1 // s2, blank-padded or truncated. */
HIDDEN void _gfortran_concat_string(size_t destlen, char *dest, size_t len1, const char *s1,
                                    size_t len2, const char *s2) {
  if (len1 >= destlen) {
    memcpy(dest, s1, destlen);
    return;
  }
  memcpy(dest, s1, len1);
  dest += len1;
  destlen -= len1;
  if (len2 >= destlen) {
    memcpy(dest, s2, destlen);
    return;
  }
  memcpy(dest, s2, len2);
  memset(dest + len2, ' ', destlen - len2);
}

/* ETIME(TARRAY): user and system CPU seconds in TARRAY(1:2), their sum as the result. The
 * argument is a rank-1 REAL(4) array descriptor; only its base address and stride are read. */
struct gfc_dim { ptrdiff_t stride, lower_bound, upper_bound; };
struct gfc_array_r4 {
  float *base_addr;
  size_t offset;
  struct { size_t elem_len; int version; signed char rank, type; short attribute; } dtype;
  ptrdiff_t span;
  struct gfc_dim dim[1];
};

HIDDEN float _gfortran_etime(struct gfc_array_r4 *t) {
  struct rusage r;
  float user = 0.0f, sys = 0.0f;
  if (getrusage(RUSAGE_SELF, &r) == 0) {
    user = (float)r.ru_utime.tv_sec + 1e-6f * (float)r.ru_utime.tv_usec;
    sys = (float)r.ru_stime.tv_sec + 1e-6f * (float)r.ru_stime.tv_usec;
  }
  if (t && t->base_addr) {
    ptrdiff_t s = t->dim[0].stride ? t->dim[0].stride : 1;
    ptrdiff_t n = t->dim[0].upper_bound - t->dim[0].lower_bound + 1;
    if (n >= 1) t->base_addr[0] = user;
    if (n >= 2) t->base_addr[s] = sys;
  }
  return user + sys;
}
