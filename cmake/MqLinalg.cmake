# BLAS (with CBLAS and the LAPACK routines dpotrf/dtrtri) and ScaLAPACK for mpiquant, under the
# names distributions and module systems give them. Defines two imported targets:
#   mq::blas       CBLAS + LAPACK, and cblas.h on the include path
#   mq::scalapack  ScaLAPACK with its BLACS
# and reports what it found in one configure line each. Included by the top-level
# CMakeLists.txt (after find_package(PkgConfig) and find_package(MPI)) and by the installed
# package's mpiquantConfig.cmake, which passes the resolved libraries back in as the two
# explicit options.
#
# BLAS, first that applies:
#   1. -DMQ_BLAS_LIBRARIES="/path/libopenblas.so;..." (and -DMQ_BLAS_INCLUDE_DIRS=dir of cblas.h)
#   2. -DBLA_VENDOR=... (or the environment's BLA_VENDOR): CMake's FindBLAS/FindLAPACK for that
#      vendor (OpenBLAS, Intel10_64lp, FLAME, Generic, ...)
#   3. pkg-config openblas (Debian, Fedora, Spack, most module systems' OpenBLAS)
#   4. FindBLAS/FindLAPACK, any vendor
# ScaLAPACK, first that applies:
#   1. -DMQ_SCALAPACK_LIBRARIES="/path/libscalapack.so;..."
#   2. pkg-config scalapack-openmpi (Debian), scalapack (Spack, Fedora's module builds,
#      EasyBuild), scalapack-mpich
#   3. a library named scalapack, scalapack-openmpi or scalapack-mpich under CMAKE_PREFIX_PATH,
#      SCALAPACK_ROOT, EBROOTSCALAPACK or the default paths
# Each is then linked in a test program (cblas_dgemm + dpotrf_; pdpotrf_ + Cblacs_gridinit with
# MPI): a wrong library fails here with its name, not at the end of the build.
include_guard(GLOBAL)
include(CheckCSourceCompiles)
include(CMakePushCheckState)

set(MQ_BLAS_LIBRARIES "" CACHE STRING
    "BLAS+LAPACK libraries to link (full paths or -l flags); empty: search (cmake/MqLinalg.cmake)")
set(MQ_BLAS_INCLUDE_DIRS "" CACHE STRING "Directories holding cblas.h for MQ_BLAS_LIBRARIES")
set(MQ_SCALAPACK_LIBRARIES "" CACHE STRING
    "ScaLAPACK libraries to link (full paths or -l flags); empty: search (cmake/MqLinalg.cmake)")

# The link items and include directories of a pkg-config module found with IMPORTED_TARGET.
function(mq__from_pkg target libs_var incs_var)
  get_target_property(libs ${target} INTERFACE_LINK_LIBRARIES)
  get_target_property(incs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT libs)
    set(libs "")
  endif()
  if(NOT incs)
    set(incs "")
  endif()
  set(${libs_var} "${libs}" PARENT_SCOPE)
  set(${incs_var} "${incs}" PARENT_SCOPE)
endfunction()

# cblas.h for a BLAS found without pkg-config: beside the library's prefix, OpenBLAS' own
# subfolders, or the default paths.
function(mq__find_cblas_header libs out_var)
  set(hints "")
  foreach(lib ${libs})
    if(IS_ABSOLUTE "${lib}")
      get_filename_component(dir "${lib}" DIRECTORY)
      list(APPEND hints "${dir}/../include")
    endif()
  endforeach()
  find_path(MQ_CBLAS_INCLUDE_DIR cblas.h HINTS ${hints} $ENV{OPENBLAS_ROOT}/include
            $ENV{EBROOTOPENBLAS}/include PATH_SUFFIXES openblas openblas-pthread)
  if(MQ_CBLAS_INCLUDE_DIR)
    set(${out_var} "${MQ_CBLAS_INCLUDE_DIR}" PARENT_SCOPE)
  else()
    set(${out_var} "" PARENT_SCOPE)
  endif()
endfunction()

# ---- BLAS ----
set(MQ_BLAS_LINK "")
set(MQ_BLAS_INCLUDE "")
if(MQ_BLAS_LIBRARIES)
  set(MQ_BLAS_HOW "MQ_BLAS_LIBRARIES")
  set(MQ_BLAS_LINK "${MQ_BLAS_LIBRARIES}")
  set(MQ_BLAS_INCLUDE "${MQ_BLAS_INCLUDE_DIRS}")
  if(NOT MQ_BLAS_INCLUDE)
    mq__find_cblas_header("${MQ_BLAS_LINK}" MQ_BLAS_INCLUDE)
  endif()
else()
  if(NOT DEFINED BLA_VENDOR AND DEFINED ENV{BLA_VENDOR})
    set(BLA_VENDOR "$ENV{BLA_VENDOR}")
  endif()
  set(MQ_VENDOR_GIVEN "${BLA_VENDOR}") # FindBLAS sets BLA_VENDOR=All when there was none
  if(NOT MQ_VENDOR_GIVEN)
    pkg_check_modules(MQ_PC_OPENBLAS QUIET IMPORTED_TARGET openblas)
  endif()
  if(MQ_PC_OPENBLAS_FOUND)
    set(MQ_BLAS_HOW "pkg-config openblas ${MQ_PC_OPENBLAS_VERSION}")
    mq__from_pkg(PkgConfig::MQ_PC_OPENBLAS MQ_BLAS_LINK MQ_BLAS_INCLUDE)
  else()
    find_package(BLAS)
    find_package(LAPACK)
    if(NOT BLAS_FOUND OR NOT LAPACK_FOUND)
      message(FATAL_ERROR "mpiquant: no BLAS with LAPACK found (BLA_VENDOR '${MQ_VENDOR_GIVEN}'; "
        "tried pkg-config openblas unless a vendor is set, then CMake's FindBLAS). Install "
        "OpenBLAS (Debian: libopenblas-dev), `module load openblas`, or pass "
        "-DMQ_BLAS_LIBRARIES=/path/to/libopenblas.so (and -DMQ_BLAS_INCLUDE_DIRS=dir of cblas.h).")
    endif()
    if(MQ_VENDOR_GIVEN)
      set(MQ_BLAS_HOW "FindBLAS BLA_VENDOR=${MQ_VENDOR_GIVEN}")
    else()
      set(MQ_BLAS_HOW "FindBLAS")
    endif()
    set(MQ_BLAS_LINK ${LAPACK_LIBRARIES} ${BLAS_LIBRARIES} ${LAPACK_LINKER_FLAGS}
        ${BLAS_LINKER_FLAGS})
    list(REMOVE_DUPLICATES MQ_BLAS_LINK)
    mq__find_cblas_header("${MQ_BLAS_LINK}" MQ_BLAS_INCLUDE)
  endif()
endif()

cmake_push_check_state(RESET)
set(CMAKE_REQUIRED_LIBRARIES ${MQ_BLAS_LINK} m)
set(CMAKE_REQUIRED_INCLUDES ${MQ_BLAS_INCLUDE})
set(CMAKE_REQUIRED_QUIET ON)
unset(MQ_BLAS_LINKS CACHE) # re-test when the libraries change
check_c_source_compiles([=[
#include <stddef.h>
#include <cblas.h>
void dpotrf_(const char *, const int *, double *, const int *, int *, size_t);
int main(void) {
  double a = 4.0, c = 0.0; int n = 1, info = 0;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0, &a, 1, &a, 1, 0.0, &c, 1);
  dpotrf_("L", &n, &a, &n, &info, 1);
  return info;
}]=] MQ_BLAS_LINKS)
unset(MQ_HAVE_OPENBLAS_THREADS CACHE)
check_c_source_compiles([=[
#include <cblas.h>
int main(void) { return openblas_get_num_threads() < 0; }]=] MQ_HAVE_OPENBLAS_THREADS)
cmake_pop_check_state()
if(NOT MQ_BLAS_LINKS)
  message(FATAL_ERROR "mpiquant: the BLAS from ${MQ_BLAS_HOW} (${MQ_BLAS_LINK}; cblas.h in "
    "'${MQ_BLAS_INCLUDE}') does not link a program calling cblas_dgemm and dpotrf_: it needs "
    "CBLAS and LAPACK. Pass both libraries in -DMQ_BLAS_LIBRARIES and the folder of cblas.h in "
    "-DMQ_BLAS_INCLUDE_DIRS.")
endif()
if(NOT TARGET mq::blas)
  add_library(mq::blas INTERFACE IMPORTED)
  set_target_properties(mq::blas PROPERTIES INTERFACE_LINK_LIBRARIES "${MQ_BLAS_LINK}"
    INTERFACE_INCLUDE_DIRECTORIES "${MQ_BLAS_INCLUDE}")
  if(NOT MQ_HAVE_OPENBLAS_THREADS) # core/blas.h then counts one BLAS thread
    set_target_properties(mq::blas PROPERTIES INTERFACE_COMPILE_DEFINITIONS MQ_NO_OPENBLAS_THREADS)
  endif()
endif()
message(STATUS "mpiquant: BLAS/LAPACK from ${MQ_BLAS_HOW}: ${MQ_BLAS_LINK} (cblas.h: "
               "${MQ_BLAS_INCLUDE})")

# ---- ScaLAPACK ----
set(MQ_SCALAPACK_LINK "")
if(MQ_SCALAPACK_LIBRARIES)
  set(MQ_SCALAPACK_HOW "MQ_SCALAPACK_LIBRARIES")
  set(MQ_SCALAPACK_LINK "${MQ_SCALAPACK_LIBRARIES}")
else()
  pkg_search_module(MQ_PC_SCALAPACK QUIET IMPORTED_TARGET scalapack-openmpi scalapack
                    scalapack-mpich)
  if(MQ_PC_SCALAPACK_FOUND)
    set(MQ_SCALAPACK_HOW "pkg-config ${MQ_PC_SCALAPACK_MODULE_NAME} ${MQ_PC_SCALAPACK_VERSION}")
    mq__from_pkg(PkgConfig::MQ_PC_SCALAPACK MQ_SCALAPACK_LINK unused)
  else()
    find_library(MQ_SCALAPACK_LIBRARY NAMES scalapack scalapack-openmpi scalapack-mpich
                 HINTS $ENV{SCALAPACK_ROOT} $ENV{EBROOTSCALAPACK} PATH_SUFFIXES lib lib64)
    if(NOT MQ_SCALAPACK_LIBRARY)
      message(FATAL_ERROR "mpiquant: ScaLAPACK not found (pkg-config scalapack-openmpi, "
        "scalapack, scalapack-mpich; libraries scalapack, scalapack-openmpi, scalapack-mpich). "
        "Install it (Debian: libscalapack-openmpi-dev), `module load scalapack`, or pass "
        "-DMQ_SCALAPACK_LIBRARIES=/path/to/libscalapack.so.")
    endif()
    set(MQ_SCALAPACK_HOW "library search")
    set(MQ_SCALAPACK_LINK "${MQ_SCALAPACK_LIBRARY}")
  endif()
endif()

cmake_push_check_state(RESET)
set(CMAKE_REQUIRED_LIBRARIES ${MQ_SCALAPACK_LINK} ${MQ_BLAS_LINK} MPI::MPI_C m)
set(CMAKE_REQUIRED_QUIET ON)
unset(MQ_SCALAPACK_LINKS CACHE)
check_c_source_compiles([=[
void Cblacs_gridinit(int *, const char *, int, int);
void pdpotrf_(const char *, const int *, double *, const int *, const int *, const int *, int *);
int main(int argc, char **argv) {
  if (argc > 99) { /* linked, never run */
    int ctx = 0, one = 1, info = 0; double a = 1.0;
    Cblacs_gridinit(&ctx, "R", 1, 1);
    pdpotrf_("L", &one, &a, &one, &one, &one, &info);
  }
  (void)argv;
  return 0;
}]=] MQ_SCALAPACK_LINKS)
cmake_pop_check_state()
if(NOT MQ_SCALAPACK_LINKS)
  message(FATAL_ERROR "mpiquant: the ScaLAPACK from ${MQ_SCALAPACK_HOW} (${MQ_SCALAPACK_LINK}) "
    "does not link pdpotrf_ and Cblacs_gridinit with this MPI and BLAS: it may be built for "
    "another MPI. Pass the right one in -DMQ_SCALAPACK_LIBRARIES.")
endif()
if(NOT TARGET mq::scalapack)
  add_library(mq::scalapack INTERFACE IMPORTED)
  set_target_properties(mq::scalapack PROPERTIES INTERFACE_LINK_LIBRARIES "${MQ_SCALAPACK_LINK}")
endif()
message(STATUS "mpiquant: ScaLAPACK from ${MQ_SCALAPACK_HOW}: ${MQ_SCALAPACK_LINK}")
