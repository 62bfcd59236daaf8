/* PMPI wrappers that count what this rank sends (parallel/traffic.h: the convention, per call)
 * into the current phase's counters. Linked into the mpiquant executable only, never into the
 * library: library users and their own PMPI tools are unaffected. The executable exports these
 * symbols (CMake: ENABLE_EXPORTS), so calls made from inside shared libraries — ScaLAPACK's
 * BLACS in libscalapack-openmpi, HDF5 — resolve to them as well as mpiquant's own.
 *
 * Wrapped: every sending call that Debian's libscalapack-openmpi imports (Send, Isend, Rsend,
 * Sendrecv, Bcast, Reduce, Allreduce, Barrier) and that mpiquant makes (Allgather(v), Gather(v),
 * Alltoallv, Exscan, Bcast, Allreduce, Sendrecv, Barrier), plus the rest of the blocking
 * point-to-point sends and collectives for completeness. */
#include <mpi.h>

#include "parallel/traffic.h"

/* Bytes of count elements of type (MPI_Type_size: the data, not the extent). */
static double type_bytes(double count, MPI_Datatype type) {
  int size = 0;
  if (count <= 0 || type == MPI_DATATYPE_NULL || PMPI_Type_size(type, &size) != MPI_SUCCESS)
    return 0;
  return count * (double)size;
}

/* This rank's place in comm; 0 when comm has one rank (nothing leaves it: count nothing). */
static int place(MPI_Comm comm, int *rank, int *size) {
  *rank = 0;
  *size = 1;
  if (comm == MPI_COMM_NULL) return 0;
  PMPI_Comm_size(comm, size);
  PMPI_Comm_rank(comm, rank);
  return *size > 1;
}

static void count_send(int count, MPI_Datatype type, int dest, MPI_Comm comm) {
  int rank, size;
  if (!place(comm, &rank, &size) || dest == MPI_PROC_NULL || dest == rank) return;
  mq_traffic_count(type_bytes(count, type), 1);
}

/* One collective call on comm: bytes as the convention says, one message. */
static void count_collective(double bytes, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size)) mq_traffic_count(bytes, 1);
}

static double sum_except(const int *counts, int size, int skip) {
  double s = 0;
  for (int q = 0; q < size; q++)
    if (q != skip) s += counts[q];
  return s;
}

/* ---- initialisation: the counters are live from here on ---- */

int MPI_Init(int *argc, char ***argv) {
  int rc = PMPI_Init(argc, argv);
  mq_traffic_set_measured(rc == MPI_SUCCESS);
  return rc;
}

int MPI_Init_thread(int *argc, char ***argv, int required, int *provided) {
  int rc = PMPI_Init_thread(argc, argv, required, provided);
  mq_traffic_set_measured(rc == MPI_SUCCESS);
  return rc;
}

/* ---- point to point ---- */

int MPI_Send(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm) {
  count_send(count, type, dest, comm);
  return PMPI_Send(buf, count, type, dest, tag, comm);
}

int MPI_Ssend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm) {
  count_send(count, type, dest, comm);
  return PMPI_Ssend(buf, count, type, dest, tag, comm);
}

int MPI_Rsend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm) {
  count_send(count, type, dest, comm);
  return PMPI_Rsend(buf, count, type, dest, tag, comm);
}

int MPI_Bsend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm) {
  count_send(count, type, dest, comm);
  return PMPI_Bsend(buf, count, type, dest, tag, comm);
}

int MPI_Isend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm,
              MPI_Request *req) {
  count_send(count, type, dest, comm);
  return PMPI_Isend(buf, count, type, dest, tag, comm, req);
}

int MPI_Issend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm,
               MPI_Request *req) {
  count_send(count, type, dest, comm);
  return PMPI_Issend(buf, count, type, dest, tag, comm, req);
}

int MPI_Irsend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm,
               MPI_Request *req) {
  count_send(count, type, dest, comm);
  return PMPI_Irsend(buf, count, type, dest, tag, comm, req);
}

int MPI_Ibsend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm,
               MPI_Request *req) {
  count_send(count, type, dest, comm);
  return PMPI_Ibsend(buf, count, type, dest, tag, comm, req);
}

int MPI_Sendrecv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, int dest,
                 int sendtag, void *recvbuf, int recvcount, MPI_Datatype recvtype, int source,
                 int recvtag, MPI_Comm comm, MPI_Status *status) {
  count_send(sendcount, sendtype, dest, comm);
  return PMPI_Sendrecv(sendbuf, sendcount, sendtype, dest, sendtag, recvbuf, recvcount,
                       recvtype, source, recvtag, comm, status);
}

int MPI_Sendrecv_replace(void *buf, int count, MPI_Datatype type, int dest, int sendtag,
                         int source, int recvtag, MPI_Comm comm, MPI_Status *status) {
  count_send(count, type, dest, comm);
  return PMPI_Sendrecv_replace(buf, count, type, dest, sendtag, source, recvtag, comm, status);
}

/* ---- collectives ---- */

int MPI_Barrier(MPI_Comm comm) {
  count_collective(0, comm);
  return PMPI_Barrier(comm);
}

int MPI_Bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size)) mq_traffic_count(rank == root ? type_bytes(count, type) : 0, 1);
  return PMPI_Bcast(buf, count, type, root, comm);
}

int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
                  MPI_Comm comm) {
  count_collective(type_bytes(count, type), comm);
  return PMPI_Allreduce(sendbuf, recvbuf, count, type, op, comm);
}

int MPI_Reduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
               int root, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size)) mq_traffic_count(rank == root ? 0 : type_bytes(count, type), 1);
  return PMPI_Reduce(sendbuf, recvbuf, count, type, op, root, comm);
}

int MPI_Scan(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
             MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size))
    mq_traffic_count(rank == size - 1 ? 0 : type_bytes(count, type), 1);
  return PMPI_Scan(sendbuf, recvbuf, count, type, op, comm);
}

int MPI_Exscan(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
               MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size))
    mq_traffic_count(rank == size - 1 ? 0 : type_bytes(count, type), 1);
  return PMPI_Exscan(sendbuf, recvbuf, count, type, op, comm);
}

int MPI_Reduce_scatter(const void *sendbuf, void *recvbuf, const int recvcounts[],
                       MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size))
    mq_traffic_count(type_bytes(sum_except(recvcounts, size, rank), type), 1);
  return PMPI_Reduce_scatter(sendbuf, recvbuf, recvcounts, type, op, comm);
}

int MPI_Reduce_scatter_block(const void *sendbuf, void *recvbuf, int recvcount,
                             MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size))
    mq_traffic_count(type_bytes((double)recvcount * (size - 1), type), 1);
  return PMPI_Reduce_scatter_block(sendbuf, recvbuf, recvcount, type, op, comm);
}

int MPI_Allgather(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                  int recvcount, MPI_Datatype recvtype, MPI_Comm comm) {
  double mine = sendbuf == MPI_IN_PLACE ? type_bytes(recvcount, recvtype)
                                        : type_bytes(sendcount, sendtype);
  count_collective(mine, comm);
  return PMPI_Allgather(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, comm);
}

int MPI_Allgatherv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                   const int recvcounts[], const int displs[], MPI_Datatype recvtype,
                   MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size))
    mq_traffic_count(sendbuf == MPI_IN_PLACE ? type_bytes(recvcounts[rank], recvtype)
                                             : type_bytes(sendcount, sendtype), 1);
  return PMPI_Allgatherv(sendbuf, sendcount, sendtype, recvbuf, recvcounts, displs, recvtype,
                         comm);
}

int MPI_Gather(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
               int recvcount, MPI_Datatype recvtype, int root, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size))
    mq_traffic_count(rank == root ? 0 : type_bytes(sendcount, sendtype), 1);
  return PMPI_Gather(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, root, comm);
}

int MPI_Gatherv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                const int recvcounts[], const int displs[], MPI_Datatype recvtype, int root,
                MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size))
    mq_traffic_count(rank == root ? 0 : type_bytes(sendcount, sendtype), 1);
  return PMPI_Gatherv(sendbuf, sendcount, sendtype, recvbuf, recvcounts, displs, recvtype, root,
                      comm);
}

int MPI_Scatter(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                int recvcount, MPI_Datatype recvtype, int root, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size))
    mq_traffic_count(rank == root ? type_bytes((double)sendcount * (size - 1), sendtype) : 0, 1);
  return PMPI_Scatter(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, root, comm);
}

int MPI_Scatterv(const void *sendbuf, const int sendcounts[], const int displs[],
                 MPI_Datatype sendtype, void *recvbuf, int recvcount, MPI_Datatype recvtype,
                 int root, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size))
    mq_traffic_count(rank == root ? type_bytes(sum_except(sendcounts, size, rank), sendtype) : 0,
                     1);
  return PMPI_Scatterv(sendbuf, sendcounts, displs, sendtype, recvbuf, recvcount, recvtype, root,
                       comm);
}

int MPI_Alltoall(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                 int recvcount, MPI_Datatype recvtype, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size)) {
    int in_place = sendbuf == MPI_IN_PLACE;
    mq_traffic_count(type_bytes((double)(in_place ? recvcount : sendcount) * (size - 1),
                                in_place ? recvtype : sendtype), 1);
  }
  return PMPI_Alltoall(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, comm);
}

int MPI_Alltoallv(const void *sendbuf, const int sendcounts[], const int sdispls[],
                  MPI_Datatype sendtype, void *recvbuf, const int recvcounts[],
                  const int rdispls[], MPI_Datatype recvtype, MPI_Comm comm) {
  int rank, size;
  if (place(comm, &rank, &size)) {
    int in_place = sendbuf == MPI_IN_PLACE;
    mq_traffic_count(type_bytes(sum_except(in_place ? recvcounts : sendcounts, size, rank),
                                in_place ? recvtype : sendtype), 1);
  }
  return PMPI_Alltoallv(sendbuf, sendcounts, sdispls, sendtype, recvbuf, recvcounts, rdispls,
                        recvtype, comm);
}
