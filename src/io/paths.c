/* The files of a run (io/paths.h): inputs opened without blocking, outputs resolved against
 * them, probed and locked before anything is created. Names are resolved into PATH_MAX
 * buffers; only the list of a checkpoint's files is allocated (rank 0, once). */
#include "io/paths.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/status.h"
#include "parallel/ctx.h"

enum { PROBE_BYTES = 4096 };

/* ---- single files ---- */

mq_status mq_path_open_regular(const char *path, int *fd, mq_error *err) {
  mq_status st = MQ_OK;
  struct stat sb;
  *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (*fd < 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  if (fstat(*fd, &sb) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot stat: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode)) MQ_FAIL(err, MQ_EINPUT, "%s: not a regular file", path);
  int flags = fcntl(*fd, F_GETFL);
  if (flags < 0 || fcntl(*fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
cleanup:
  if (st != MQ_OK && *fd >= 0) {
    close(*fd);
    *fd = -1;
  }
  return st;
}

mq_status mq_path_check_regular(const char *path, mq_error *err) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    return mq__fail(err, MQ_EINPUT, __FILE__, __LINE__, "%s: cannot open: %s", path,
                    strerror(errno));
  if (!S_ISREG(sb.st_mode))
    return mq__fail(err, MQ_EINPUT, __FILE__, __LINE__, "%s: not a regular file", path);
  return MQ_OK;
}

mq_status mq_path_read_all(const char *path, size_t max_bytes, char **text, size_t *len,
                           mq_error *err) {
  mq_status st = MQ_OK;
  int fd = -1;
  char *buf = NULL;
  struct stat sb;
  *text = NULL;
  *len = 0;
  MQ_CHECK(mq_path_open_regular(path, &fd, err));
  if (fstat(fd, &sb) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot stat: %s", path, strerror(errno));
  if ((unsigned long long)sb.st_size > (unsigned long long)max_bytes)
    MQ_FAIL(err, MQ_EINPUT, "%s: larger than %zu bytes", path, max_bytes);
  /* room for one byte more than fstat said (a file that grows is refused) and the NUL */
  size_t cap = (size_t)sb.st_size + 2, n = 0;
  buf = mq_alloc(cap, 1);
  MQ_CHECK_ALLOC(err, buf, cap);
  for (;;) { /* until end of file */
    if (n == cap - 1) MQ_FAIL(err, MQ_EINPUT, "%s: changed while being read", path);
    ssize_t got = read(fd, buf + n, cap - 1 - n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) MQ_FAIL(err, MQ_EINPUT, "%s: read error: %s", path, strerror(errno));
    if (got == 0) break;
    n += (size_t)got;
  }
  buf[n] = '\0';
  *text = buf;
  *len = n;
  buf = NULL;
cleanup:
  if (fd >= 0) close(fd);
  mq_free(buf);
  return st;
}

/* ---- the list ---- */

static void add(mq_run_path *list, int *n, const char *opt, const char *path, mq_path_kind kind,
                int force) {
  if (path == NULL || *n >= MQ_RUN_MAX_PATHS) return;
  list[(*n)++] = (mq_run_path){.path = path, .opt = opt, .kind = kind, .force = force};
}

void mq_run_paths_input(mq_run_paths *rp, const char *opt, const char *path, mq_path_kind kind) {
  add(rp->in, &rp->nin, opt, path, kind, 0);
}

void mq_run_paths_output(mq_run_paths *rp, const char *opt, const char *path, mq_path_kind kind,
                         int force) {
  add(rp->out, &rp->nout, opt, path, kind, force);
}

/* ---- resolving names ---- */

/* dst = src without trailing slashes ("/" stays). -1 when too long or empty. */
static int trim(const char *src, char dst[PATH_MAX]) {
  size_t n = strlen(src);
  while (n > 1 && src[n - 1] == '/') n--;
  if (n == 0 || n >= PATH_MAX) return -1;
  memcpy(dst, src, n);
  dst[n] = '\0';
  return 0;
}

/* out = the absolute name of path with every symbolic link resolved: realpath() of the nearest
 * existing ancestor plus the components that do not exist yet. 0, or -1 with errno. */
static int resolve(const char *path, char out[PATH_MAX]) {
  char buf[PATH_MAX];
  if (trim(path, buf) != 0) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if (realpath(buf, out) != NULL) return 0;
  if (errno != ENOENT) return -1;
  char *slash = strrchr(buf, '/');
  const char *base = slash ? slash + 1 : buf;
  if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0) return -1;
  char parent[PATH_MAX];
  if (slash == NULL) snprintf(parent, sizeof parent, ".");
  else if (slash == buf) snprintf(parent, sizeof parent, "/");
  else snprintf(parent, sizeof parent, "%.*s", (int)(slash - buf), buf);
  if (resolve(parent, out) != 0) return -1;
  size_t n = strlen(out);
  if (n + 1 + strlen(base) >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  snprintf(out + n, PATH_MAX - n, "%s%s", n > 0 && out[n - 1] == '/' ? "" : "/", base);
  return 0;
}

/* One resolved file of the run. */
typedef struct known {
  char name[PATH_MAX]; /* resolved */
  const char *given;   /* as the user wrote it; NULL: a file found in a checkpoint (name) */
  const char *opt;
  int exists, is_dir;
  dev_t dev;
  ino_t ino;
} known;

/* The inputs, checkpoints expanded to their files. */
typedef struct run_files {
  known *in; /* [nin], mq_alloc'd, capacity cap */
  int nin, cap;
} run_files;

static const char *shown(const known *k) { return k->given != NULL ? k->given : k->name; }

/* The next free entry, or NULL (MQ_EFAIL recorded) when out of memory. */
static known *next_known(run_files *rf, mq_error *err) {
  if (rf->nin == rf->cap) {
    int cap = rf->cap > 0 ? 2 * rf->cap : 16;
    known *grown = mq_calloc((size_t)cap, sizeof *grown);
    if (grown == NULL) {
      (void)mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                     (size_t)cap * sizeof *grown);
      return NULL;
    }
    if (rf->nin > 0) memcpy(grown, rf->in, (size_t)rf->nin * sizeof *grown);
    mq_free(rf->in);
    rf->in = grown;
    rf->cap = cap;
  }
  known *k = &rf->in[rf->nin];
  memset(k, 0, sizeof *k);
  return k;
}

/* An input file: opened without blocking, checked regular, identified. given: as the user
 * wrote it, or NULL for a file of a checkpoint directory. */
static mq_status add_input_file(run_files *rf, const char *path, const char *given,
                                const char *opt, mq_error *err) {
  mq_status st = MQ_OK;
  int fd = -1;
  struct stat sb;
  MQ_CHECK(mq_path_open_regular(path, &fd, err));
  if (fstat(fd, &sb) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot stat: %s", path, strerror(errno));
  known *k = next_known(rf, err);
  if (k == NULL) MQ_CHECK(MQ_EFAIL);
  if (resolve(path, k->name) != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: cannot resolve: %s", path, strerror(errno));
  k->given = given;
  k->opt = opt;
  k->exists = 1;
  k->dev = sb.st_dev;
  k->ino = sb.st_ino;
  rf->nin++;
cleanup:
  if (fd >= 0) close(fd);
  return st;
}

/* The files of a checkpoint that a run reads. */
static int checkpoint_file(const char *name) {
  size_t n = strlen(name);
  return !strcmp(name, "config.json") || !strcmp(name, "tokenizer.json") ||
         !strcmp(name, "model.safetensors.index.json") ||
         (n > 12 && !strcmp(name + n - 12, ".safetensors"));
}

/* A checkpoint directory (itself, and its files) or a single .safetensors file. */
static mq_status add_checkpoint(run_files *rf, const char *dir, const char *opt, mq_error *err) {
  mq_status st = MQ_OK;
  DIR *d = NULL;
  struct stat sb;
  if (stat(dir, &sb) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot open: %s", dir, strerror(errno));
  if (!S_ISDIR(sb.st_mode)) {
    MQ_CHECK(add_input_file(rf, dir, dir, opt, err));
    goto cleanup;
  }
  known *k = next_known(rf, err);
  if (k == NULL) MQ_CHECK(MQ_EFAIL);
  if (resolve(dir, k->name) != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: cannot resolve: %s", dir, strerror(errno));
  k->given = dir;
  k->opt = opt;
  k->exists = k->is_dir = 1;
  k->dev = sb.st_dev;
  k->ino = sb.st_ino;
  rf->nin++;
  d = opendir(dir);
  if (d == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: cannot list: %s", dir, strerror(errno));
  for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
    if (!checkpoint_file(e->d_name)) continue;
    char p[PATH_MAX];
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= sizeof p)
      MQ_FAIL(err, MQ_EINPUT, "%s/%s: path too long", dir, e->d_name);
    MQ_CHECK(add_input_file(rf, p, NULL, opt, err));
  }
cleanup:
  if (d != NULL) closedir(d);
  return st;
}

/* 1 when dir (resolved) is name or one of its ancestors. */
static int contains(const char *dir, const char *name) {
  size_t n = strlen(dir);
  if (strncmp(dir, name, n) != 0) return 0;
  return name[n] == '\0' || name[n] == '/' || (n > 0 && dir[n - 1] == '/');
}

/* 1 when directory path holds anything but "." and "..". */
static int dir_nonempty(const char *path) {
  DIR *d = opendir(path);
  int any = 0;
  if (d == NULL) return 1;
  for (struct dirent *e = readdir(d); e != NULL && !any; e = readdir(d))
    any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  return any;
}

/* An output, checked against the inputs and the outputs before it (out[0..i)). */
static mq_status check_output(const run_files *rf, const mq_run_path *o, known *me,
                              const known *earlier, int nearlier, mq_error *err) {
  mq_status st = MQ_OK;
  struct stat sb, lsb;
  const char *p = o->path;
  if (resolve(p, me->name) != 0)
    MQ_FAIL(err, MQ_EUSAGE, "%s: cannot resolve the output path: %s", p, strerror(errno));
  me->given = p;
  me->opt = o->opt;
  if (stat(p, &sb) == 0) {
    me->exists = 1;
    me->is_dir = S_ISDIR(sb.st_mode);
    me->dev = sb.st_dev;
    me->ino = sb.st_ino;
    if (o->kind == MQ_PATH_DIR && !me->is_dir)
      MQ_FAIL(err, MQ_EUSAGE, "%s: exists and is not a directory", p);
    if (o->kind == MQ_PATH_FILE && !S_ISREG(sb.st_mode))
      MQ_FAIL(err, MQ_EUSAGE, "%s: exists and is not a regular file", p);
  } else if (lstat(p, &lsb) == 0 && S_ISLNK(lsb.st_mode)) {
    MQ_FAIL(err, MQ_EUSAGE, "%s: a dangling symbolic link (refusing to create its target)", p);
  }
  for (int i = 0; i < rf->nin; i++) {
    const known *in = &rf->in[i];
    int same = me->exists ? in->dev == me->dev && in->ino == me->ino
                          : strcmp(in->name, me->name) == 0;
    if (same)
      MQ_FAIL(err, MQ_EUSAGE, "%s: refusing to write: it is the input %s %s", p, in->opt,
              shown(in));
    if (o->kind == MQ_PATH_DIR && contains(me->name, in->name))
      MQ_FAIL(err, MQ_EUSAGE, "%s: refusing to replace this directory: it holds the input %s %s",
              p, in->opt, shown(in));
  }
  for (int i = 0; i < nearlier; i++) {
    const known *e = &earlier[i];
    int same = me->exists && e->exists ? e->dev == me->dev && e->ino == me->ino
                                       : strcmp(e->name, me->name) == 0;
    if (same || contains(me->name, e->name) || contains(e->name, me->name))
      MQ_FAIL(err, MQ_EUSAGE, "%s: %s and %s name the same file", p, o->opt, e->opt);
  }
  if (o->kind == MQ_PATH_DIR && me->exists && !o->force && dir_nonempty(p))
    MQ_FAIL(err, MQ_EUSAGE, "%s: exists and is not empty (--force replaces it whole)", p);
cleanup:
  return st;
}

/* ---- probing and locking ---- */

/* Creates, writes and removes a probe file in the directory that will hold the output
 * (resolved: the output's resolved name; its parent must exist). */
static mq_status probe(const char *given, const char *resolved, mq_error *err) {
  mq_status st = MQ_OK;
  char dir[PATH_MAX], name[PATH_MAX + 64];
  static const char zeros[PROBE_BYTES];
  int fd = -1;
  struct stat sb;
  snprintf(dir, sizeof dir, "%s", resolved);
  char *slash = strrchr(dir, '/'); /* resolved names are absolute */
  if (slash == NULL) MQ_FAIL(err, MQ_EUSAGE, "%s: no directory to write into", given);
  if (slash == dir) slash[1] = '\0';
  else *slash = '\0';
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    MQ_FAIL(err, MQ_EUSAGE, "%s: cannot create files in %s: %s", given, dir,
            strerror(stat(dir, &sb) != 0 ? errno : ENOTDIR));
  snprintf(name, sizeof name, "%s%s.mpiquant.probe.%ld", dir,
           dir[strlen(dir) - 1] == '/' ? "" : "/", (long)getpid());
  fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    MQ_FAIL(err, e == ENOSPC || e == EDQUOT || e == EIO ? MQ_EFAIL : MQ_EUSAGE,
            "%s: cannot create files in %s: %s", given, dir, strerror(e));
  }
  size_t done = 0;
  while (done < sizeof zeros) {
    ssize_t n = write(fd, zeros + done, sizeof zeros - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : ENOSPC;
      MQ_FAIL(err, e == ENOSPC || e == EDQUOT || e == EIO ? MQ_EFAIL : MQ_EUSAGE,
              "%s: cannot write in %s: %s", given, dir, strerror(e));
    }
    done += (size_t)n;
  }
cleanup:
  if (fd >= 0) {
    close(fd);
    unlink(name);
  }
  return st;
}

/* "<given>.lock" (trailing slashes dropped). */
static int lock_name(const char *given, char out[PATH_MAX]) {
  char buf[PATH_MAX];
  if (trim(given, buf) != 0 || strlen(buf) + 6 > PATH_MAX) return -1;
  snprintf(out, PATH_MAX, "%s.lock", buf);
  return 0;
}

/* Rank 0: the write lock on <given>.lock in *fd. A lock file replaced between open and lock
 * (another run released it) is opened again. */
static mq_status take_lock(const char *given, int *fd, mq_error *err) {
  mq_status st = MQ_OK;
  char name[PATH_MAX];
  *fd = -1;
  if (lock_name(given, name) != 0) MQ_FAIL(err, MQ_EUSAGE, "%s: path too long", given);
  for (int attempt = 0; attempt < 8; attempt++) {
    struct stat a, b;
    *fd = open(name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (*fd < 0)
      MQ_FAIL(err, MQ_EUSAGE, "%s: cannot create the lock file %s: %s", given, name,
              strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(*fd, F_SETLK, &fl) != 0) {
      int e = errno;
      if (e == EACCES || e == EAGAIN)
        MQ_FAIL(err, MQ_EUSAGE, "%s: another mpiquant run is writing it (%s is locked)", given,
                name);
      MQ_FAIL(err, MQ_EUSAGE, "%s: cannot lock %s: %s", given, name, strerror(e));
    }
    if (fstat(*fd, &a) == 0 && stat(name, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino && S_ISREG(a.st_mode))
      goto cleanup; /* locked, and still the file of that name */
    close(*fd);
    *fd = -1;
  }
  MQ_FAIL(err, MQ_EUSAGE, "%s: cannot lock %s: it keeps being replaced", given, name);
cleanup:
  if (st != MQ_OK && *fd >= 0) {
    close(*fd);
    *fd = -1;
  }
  return st;
}

/* Rank 0: checks 1-4 of paths.h. */
static mq_status guard_local(mq_run_paths *rp, mq_error *err) {
  mq_status st = MQ_OK;
  run_files rf = {0};
  known *outs = mq_calloc(MQ_RUN_MAX_PATHS, sizeof *outs);
  MQ_CHECK_ALLOC(err, outs, MQ_RUN_MAX_PATHS * sizeof *outs);
  for (int i = 0; i < rp->nin; i++) {
    if (rp->in[i].kind == MQ_PATH_CHECKPOINT)
      MQ_CHECK(add_checkpoint(&rf, rp->in[i].path, rp->in[i].opt, err));
    else
      MQ_CHECK(add_input_file(&rf, rp->in[i].path, rp->in[i].path, rp->in[i].opt, err));
  }
  for (int i = 0; i < rp->nout; i++)
    MQ_CHECK(check_output(&rf, &rp->out[i], &outs[i], outs, i, err));
  for (int i = 0; i < rp->nout; i++) MQ_CHECK(probe(rp->out[i].path, outs[i].name, err));
  for (int i = 0; i < rp->nout; i++) MQ_CHECK(take_lock(rp->out[i].path, &rp->lock_fd[i], err));
cleanup:
  mq_free(rf.in);
  mq_free(outs);
  return st;
}

mq_status mq_run_paths_guard(MPI_Comm comm, mq_run_paths *rp, mq_error *err) {
  mq_status st = MQ_OK;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  for (int i = 0; i < MQ_RUN_MAX_PATHS; i++) rp->lock_fd[i] = -1;
  rp->locked = 1;
  if (rank == 0) st = guard_local(rp, err);
  st = mq_agree(comm, st);
  if (st != MQ_OK) mq_run_paths_release(rp);
  return st;
}

void mq_run_paths_release(mq_run_paths *rp) {
  if (rp == NULL || !rp->locked) return;
  for (int i = 0; i < rp->nout && i < MQ_RUN_MAX_PATHS; i++) {
    char name[PATH_MAX];
    if (rp->lock_fd[i] < 0) continue;
    if (lock_name(rp->out[i].path, name) == 0) (void)unlink(name); /* while still locked */
    close(rp->lock_fd[i]);
    rp->lock_fd[i] = -1;
  }
  rp->locked = 0;
}
