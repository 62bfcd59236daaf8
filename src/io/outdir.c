/* Whole-or-absent outputs (io/outdir.h). */
#define _GNU_SOURCE /* nftw */
#include "io/outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"

/* "<dir of path>/.<base of path>.<tag>.<pid>" into a fresh mq_alloc'd string; NULL when out of
 * memory. path has no trailing slash. */
static char *sibling(const char *path, const char *tag) {
  const char *slash = strrchr(path, '/');
  int dlen = slash ? (int)(slash - path) + 1 : 0;
  const char *base = slash ? slash + 1 : path;
  size_t n = strlen(path) + strlen(tag) + 32;
  char *s = mq_alloc(n, 1);
  if (s != NULL) snprintf(s, n, "%.*s.%s.%s.%ld", dlen, path, base, tag, (long)getpid());
  return s;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

/* Removes the tree at path (symbolic links inside are removed, never followed). */
static int remove_tree(const char *path) {
  return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int is_empty_dir(const char *path) {
  DIR *d = opendir(path);
  int empty = d != NULL;
  for (struct dirent *e = d ? readdir(d) : NULL; e != NULL && empty; e = readdir(d))
    empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
  if (d != NULL) closedir(d);
  return empty;
}

mq_status mq_outdir_begin(const char *target, int force, mq_outdir *od, mq_error *err) {
  mq_status st = MQ_OK;
  struct stat sb;
  memset(od, 0, sizeof *od);
  size_t n = strlen(target);
  while (n > 1 && target[n - 1] == '/') n--;
  od->target = mq_alloc(n + 1, 1);
  MQ_CHECK_ALLOC(err, od->target, n + 1);
  memcpy(od->target, target, n);
  od->target[n] = '\0';
  if (stat(od->target, &sb) == 0) {
    if (!S_ISDIR(sb.st_mode)) MQ_FAIL(err, MQ_EUSAGE, "%s: exists and is not a directory", target);
    if (!force && !is_empty_dir(od->target))
      MQ_FAIL(err, MQ_EUSAGE, "%s: exists and is not empty (--force replaces it whole)", target);
  }
  char *tmp = sibling(od->target, "tmp");
  MQ_CHECK_ALLOC(err, tmp, n + 32);
  if (mkdir(tmp, 0777) != 0) {
    int e = errno;
    mq_free(tmp);
    MQ_FAIL(err, e == ENOSPC || e == EDQUOT || e == EIO ? MQ_EFAIL : MQ_EUSAGE,
            "%s: cannot create a folder beside it: %s", target, strerror(e));
  }
  od->tmp = tmp;
cleanup:
  if (st != MQ_OK) mq_outdir_abort(od, NULL);
  return st;
}

mq_status mq_outdir_commit(mq_outdir *od, mq_error *err) {
  mq_status st = MQ_OK;
  char *old = NULL;
  struct stat sb;
  if (od->tmp == NULL) MQ_FAIL(err, MQ_EFAIL, "internal error: no staging folder to commit");
  if (lstat(od->target, &sb) == 0) {
    old = sibling(od->target, "old");
    MQ_CHECK_ALLOC(err, old, strlen(od->target) + 32);
    if (rename(od->target, old) != 0)
      MQ_FAIL(err, MQ_EFAIL, "%s: cannot move the old folder aside: %s", od->target,
              strerror(errno));
  }
  if (rename(od->tmp, od->target) != 0) {
    int e = errno;
    if (old != NULL && rename(old, od->target) == 0) {
      mq_free(old);
      old = NULL;
    }
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot rename %s into place: %s", od->target, od->tmp,
            strerror(e));
  }
  mq_free(od->tmp);
  od->tmp = NULL;
  if (old != NULL && remove_tree(old) != 0)
    MQ_WARN("%s: the replaced folder %s could not be removed completely: %s", od->target, old,
            strerror(errno));
cleanup:
  mq_free(old);
  return st;
}

void mq_outdir_abort(mq_outdir *od, mq_error *err) {
  if (od == NULL) return;
  if (err != NULL && err->status != MQ_OK && od->tmp != NULL && od->target != NULL &&
      strncmp(err->msg, od->tmp, strlen(od->tmp)) == 0)
    mq__error_blame(err, od->target);
  if (od->tmp != NULL) (void)remove_tree(od->tmp);
  mq_free(od->tmp);
  mq_free(od->target);
  memset(od, 0, sizeof *od);
}

mq_status mq_write_file_atomic(const char *path, const void *data, size_t len, mq_error *err) {
  mq_status st = MQ_OK;
  int fd = -1;
  char *tmp = sibling(path, "tmp");
  MQ_CHECK_ALLOC(err, tmp, strlen(path) + 32);
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot write: %s", path, strerror(errno));
  const char *p = data;
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(fd, p + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot write: %s", path, strerror(w < 0 ? errno : EIO));
    done += (size_t)w;
  }
  if (fsync(fd) != 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot write: %s", path, strerror(errno));
  int rc = close(fd);
  fd = -1;
  if (rc != 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot write: %s", path, strerror(errno));
  if (rename(tmp, path) != 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot write: %s", path, strerror(errno));
  mq_free(tmp);
  tmp = NULL;
cleanup:
  if (fd >= 0) close(fd);
  if (tmp != NULL) (void)unlink(tmp);
  mq_free(tmp);
  return st;
}
