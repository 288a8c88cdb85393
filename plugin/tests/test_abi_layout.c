/*
 * Checks, at run time, the size and member offsets of every struct in plugin/include/nccl against
 * the numbers C layout rules give on LP64 (x86_64/aarch64 Linux), worked out by hand from the
 * member lists in the reference. A header edit that moves a member fails here even on a compiler
 * that would skip the headers' _Static_asserts.
 *
 * Output: one machine-readable line per check, read by tests/test_abi_cdefs.py to hold the Python
 * cffi declarations to the same layout:
 *   SIZE <type> <bytes>
 *   OFFSET <type>.<member path> <bytes>
 *   CONST <enumerator> <value>
 * Exit status is non-zero when any value differs from the expected one.
 */
#include <stddef.h>
#include <stdio.h>

#include "cp_core.h"
#include "nccl/profiler_v6.h"
#include "nccl/tuner_v2.h"
#include "nccl/tuner_v3.h"
#include "nccl/tuner_v6.h"
#include "testutil.h"

static void size_line(const char* type, size_t actual, size_t expected) {
  printf("SIZE %s %zu\n", type, actual);
  CHECK(actual == expected, "sizeof(%s) = %zu, the ABI needs %zu", type, actual, expected);
}

static void offset_line(const char* path, size_t actual, size_t expected) {
  printf("OFFSET %s %zu\n", path, actual);
  CHECK(actual == expected, "offsetof(%s) = %zu, the ABI needs %zu", path, actual, expected);
}

static void const_line(const char* name, long long actual, long long expected) {
  printf("CONST %s %lld\n", name, actual);
  CHECK(actual == expected, "%s = %lld, the ABI needs %lld", name, actual, expected);
}

#define SIZE(T, n) size_line(#T, sizeof(T), (n))
#define OFF(T, path, n) offset_line(#T "." #path, offsetof(T, path), (n))
#define CONST(name, n) const_line(#name, (long long)(name), (n))

/* Member lists shared by several function tables. */
#define TUNER_TABLE(T, last)   \
  SIZE(T, 32);                 \
  OFF(T, name, 0);             \
  OFF(T, init, 8);             \
  OFF(T, getCollInfo, 16);     \
  OFF(T, last, 24)

#define PROFILER_TABLE(T)        \
  SIZE(T, 48);                   \
  OFF(T, name, 0);               \
  OFF(T, init, 8);               \
  OFF(T, startEvent, 16);        \
  OFF(T, stopEvent, 24);         \
  OFF(T, recordEventState, 32);  \
  OFF(T, finalize, 40)

/* Descriptor header: `type` is 1 byte (v1-v4) or 8 bytes (v5+), padded to the pointer anyway. */
#define DESCR_HEADER(T, size)  \
  SIZE(T, size);               \
  OFF(T, type, 0);             \
  OFF(T, parentObj, 8);        \
  OFF(T, rank, 16)

#define PROXY_MEMBERS(T)        \
  OFF(T, proxyOp.pid, 24);      \
  OFF(T, proxyOp.channelId, 28);\
  OFF(T, proxyOp.peer, 32);     \
  OFF(T, proxyOp.nSteps, 36);   \
  OFF(T, proxyOp.chunkSize, 40);\
  OFF(T, proxyOp.isSend, 44);   \
  OFF(T, proxyStep.step, 24)

static void check_tuner(void) {
  TUNER_TABLE(ncclTuner_v2_t, destroy);
  TUNER_TABLE(ncclTuner_v3_t, destroy);
  TUNER_TABLE(ncclTuner_v4_t, destroy);
  TUNER_TABLE(ncclTuner_v5_t, finalize);
  SIZE(ncclTuner_v6_t, 40);
  OFF(ncclTuner_v6_t, name, 0);
  OFF(ncclTuner_v6_t, init, 8);
  OFF(ncclTuner_v6_t, getCollInfo, 16);
  OFF(ncclTuner_v6_t, finalize, 24);
  OFF(ncclTuner_v6_t, getChunkSize, 32);

  SIZE(ncclNvlDomainInfo_v5_t, 12);
  OFF(ncclNvlDomainInfo_v5_t, nNvlDomains, 0);
  OFF(ncclNvlDomainInfo_v5_t, minRanksPerNvlDomain, 4);
  OFF(ncclNvlDomainInfo_v5_t, maxRanksPerNvlDomain, 8);
  SIZE(ncclNvlDomainInfo_v6_t, 12);

  /* 7x3 + 3x7x3 + 5 x (4x3) doubles = 144. */
  SIZE(ncclTunerConstants_v5_t, 1152);
  OFF(ncclTunerConstants_v5_t, baseLatencies, 0);
  OFF(ncclTunerConstants_v5_t, hwLatencies, 168);
  OFF(ncclTunerConstants_v5_t, llMaxBws, 672);
  OFF(ncclTunerConstants_v5_t, perChMaxRingLL128Bws, 768);
  OFF(ncclTunerConstants_v5_t, perChMaxTreeLL128Bws, 864);
  OFF(ncclTunerConstants_v5_t, perChMaxTreeBws, 960);
  OFF(ncclTunerConstants_v5_t, perChMaxNVLSTreeBws, 1056);
  /* Index order: [algo][proto], [hw][algo][proto], [compcap][scale]. */
  OFF(ncclTunerConstants_v5_t, baseLatencies[1][2], 40);
  OFF(ncclTunerConstants_v5_t, hwLatencies[2][1][2], 544);
  OFF(ncclTunerConstants_v5_t, llMaxBws[2][1], 728);
  OFF(ncclTunerConstants_v5_t, perChMaxNVLSTreeBws[3][2], 1144);
  SIZE(ncclTunerConstants_v6_t, 1152);
}

static void check_profiler_v1_to_v3(void) {
  PROFILER_TABLE(ncclProfiler_v1_t);
  PROFILER_TABLE(ncclProfiler_v2_t);
  PROFILER_TABLE(ncclProfiler_v3_t);

  DESCR_HEADER(ncclProfilerEventDescr_v1_t, 120);
  OFF(ncclProfilerEventDescr_v1_t, coll.name, 24);
  OFF(ncclProfilerEventDescr_v1_t, coll.commHash, 32);
  OFF(ncclProfilerEventDescr_v1_t, coll.seqNumber, 40);
  OFF(ncclProfilerEventDescr_v1_t, coll.func, 48);
  OFF(ncclProfilerEventDescr_v1_t, coll.sendBuff, 56);
  OFF(ncclProfilerEventDescr_v1_t, coll.recvBuff, 64);
  OFF(ncclProfilerEventDescr_v1_t, coll.count, 72);
  OFF(ncclProfilerEventDescr_v1_t, coll.root, 80);
  OFF(ncclProfilerEventDescr_v1_t, coll.datatype, 84);
  OFF(ncclProfilerEventDescr_v1_t, coll.op, 88);
  OFF(ncclProfilerEventDescr_v1_t, coll.trafficBytes, 96);
  OFF(ncclProfilerEventDescr_v1_t, coll.nMaxChannels, 104);
  OFF(ncclProfilerEventDescr_v1_t, coll.nWarps, 105);
  OFF(ncclProfilerEventDescr_v1_t, coll.algo, 106);
  OFF(ncclProfilerEventDescr_v1_t, coll.proto, 107);
  OFF(ncclProfilerEventDescr_v1_t, coll.isCollnet, 108);
  OFF(ncclProfilerEventDescr_v1_t, coll.isNvls, 112);
  OFF(ncclProfilerEventDescr_v1_t, p2p.name, 24);
  OFF(ncclProfilerEventDescr_v1_t, p2p.commHash, 32);
  OFF(ncclProfilerEventDescr_v1_t, p2p.func, 40);
  OFF(ncclProfilerEventDescr_v1_t, p2p.buff, 48);
  OFF(ncclProfilerEventDescr_v1_t, p2p.datatype, 56);
  OFF(ncclProfilerEventDescr_v1_t, p2p.count, 64);
  OFF(ncclProfilerEventDescr_v1_t, p2p.peer, 72);
  PROXY_MEMBERS(ncclProfilerEventDescr_v1_t);
  SIZE(ncclProfilerCollDescr_v1_t, 96);
  SIZE(ncclProfilerP2pDescr_v1_t, 56);
  SIZE(ncclProfilerProxyOpDescr_v1_t, 24);
  SIZE(ncclProfilerProxyStepDescr_v1_t, 4);

  SIZE(ncclProfilerEventStateArgs_v1_t, 16);
  OFF(ncclProfilerEventStateArgs_v1_t, proxyOp.transSize, 0);
  OFF(ncclProfilerEventStateArgs_v1_t, proxyOp.steps, 8);
  OFF(ncclProfilerEventStateArgs_v1_t, proxyCtrl.appendedProxyOps, 0);
  SIZE(ncclProfilerEventStateArgs_v2_t, 16);
  SIZE(ncclProfilerEventStateArgs_v3_t, 16);

  DESCR_HEADER(ncclProfilerEventDescr_v2_t, 128);
  OFF(ncclProfilerEventDescr_v2_t, coll.name, 24);
  OFF(ncclProfilerEventDescr_v2_t, coll.commHash, 32);
  OFF(ncclProfilerEventDescr_v2_t, coll.seqNumber, 40);
  OFF(ncclProfilerEventDescr_v2_t, coll.func, 48);
  OFF(ncclProfilerEventDescr_v2_t, coll.sendBuff, 56);
  OFF(ncclProfilerEventDescr_v2_t, coll.recvBuff, 64);
  OFF(ncclProfilerEventDescr_v2_t, coll.count, 72);
  OFF(ncclProfilerEventDescr_v2_t, coll.root, 80);
  OFF(ncclProfilerEventDescr_v2_t, coll.datatype, 88);
  OFF(ncclProfilerEventDescr_v2_t, coll.trafficBytes, 96);
  OFF(ncclProfilerEventDescr_v2_t, coll.nMaxChannels, 104);
  OFF(ncclProfilerEventDescr_v2_t, coll.nWarps, 105);
  OFF(ncclProfilerEventDescr_v2_t, coll.algo, 112);
  OFF(ncclProfilerEventDescr_v2_t, coll.proto, 120);
  OFF(ncclProfilerEventDescr_v2_t, p2p.name, 24);
  OFF(ncclProfilerEventDescr_v2_t, p2p.func, 40);
  OFF(ncclProfilerEventDescr_v2_t, p2p.buff, 48);
  OFF(ncclProfilerEventDescr_v2_t, p2p.datatype, 56);
  OFF(ncclProfilerEventDescr_v2_t, p2p.count, 64);
  OFF(ncclProfilerEventDescr_v2_t, p2p.peer, 72);
  PROXY_MEMBERS(ncclProfilerEventDescr_v2_t);
  SIZE(ncclProfilerCollDescr_v2_t, 104);
  SIZE(ncclProfilerP2pDescr_v2_t, 56);

  DESCR_HEADER(ncclProfilerEventDescr_v3_t, 120);
  OFF(ncclProfilerEventDescr_v3_t, coll.name, 24);
  OFF(ncclProfilerEventDescr_v3_t, coll.seqNumber, 40);
  OFF(ncclProfilerEventDescr_v3_t, coll.func, 48);
  OFF(ncclProfilerEventDescr_v3_t, coll.count, 72);
  OFF(ncclProfilerEventDescr_v3_t, coll.root, 80);
  OFF(ncclProfilerEventDescr_v3_t, coll.datatype, 88);
  OFF(ncclProfilerEventDescr_v3_t, coll.nMaxChannels, 96);
  OFF(ncclProfilerEventDescr_v3_t, coll.nWarps, 97);
  OFF(ncclProfilerEventDescr_v3_t, coll.algo, 104);
  OFF(ncclProfilerEventDescr_v3_t, coll.proto, 112);
  OFF(ncclProfilerEventDescr_v3_t, p2p.peer, 72);
  OFF(ncclProfilerEventDescr_v3_t, kernelCh.channelId, 24);
  OFF(ncclProfilerEventDescr_v3_t, netPlugin.id, 24);
  OFF(ncclProfilerEventDescr_v3_t, netPlugin.data, 32);
  PROXY_MEMBERS(ncclProfilerEventDescr_v3_t);
  SIZE(ncclProfilerCollDescr_v3_t, 96);
  SIZE(ncclProfilerKernelChDescr_v3_t, 1);
  SIZE(ncclProfilerNetPluginDescr_v3_t, 16);
}

/* v4 Coll/KernelCh members; v5 and v6 keep them at the same offsets (the v5 header's wider `type`
 * still ends at 8). */
#define COLL_V4_MEMBERS(T)             \
  OFF(T, coll.seqNumber, 24);          \
  OFF(T, coll.func, 32);               \
  OFF(T, coll.sendBuff, 40);           \
  OFF(T, coll.recvBuff, 48);           \
  OFF(T, coll.count, 56);              \
  OFF(T, coll.root, 64);               \
  OFF(T, coll.datatype, 72);           \
  OFF(T, coll.nChannels, 80);          \
  OFF(T, coll.nWarps, 81);             \
  OFF(T, coll.algo, 88);               \
  OFF(T, coll.proto, 96);              \
  OFF(T, kernelCh.channelId, 24);      \
  OFF(T, kernelCh.pTimer, 32);         \
  OFF(T, netPlugin.id, 24);            \
  OFF(T, netPlugin.data, 32);          \
  OFF(T, p2p.func, 24);                \
  OFF(T, p2p.buff, 32);                \
  OFF(T, p2p.datatype, 40);            \
  OFF(T, p2p.count, 48);               \
  OFF(T, p2p.peer, 56);                \
  OFF(T, p2p.nChannels, 60)

#define STATE_ARGS_V4(T)                        \
  SIZE(T, 8);                                   \
  OFF(T, proxyStep.transSize, 0);               \
  OFF(T, proxyCtrl.appendedProxyOps, 0);        \
  OFF(T, netPlugin.data, 0);                    \
  OFF(T, kernelCh.pTimer, 0)

#define API_V5_MEMBERS(T)                 \
  OFF(T, coll.parentGroup, 104);          \
  OFF(T, p2p.parentGroup, 64);            \
  OFF(T, groupApi.graphCaptured, 24);     \
  OFF(T, groupApi.groupDepth, 28);        \
  OFF(T, collApi.func, 24);               \
  OFF(T, collApi.count, 32);              \
  OFF(T, collApi.datatype, 40);           \
  OFF(T, collApi.root, 48);               \
  OFF(T, collApi.stream, 56);             \
  OFF(T, collApi.graphCaptured, 64);      \
  OFF(T, p2pApi.func, 24);                \
  OFF(T, p2pApi.count, 32);               \
  OFF(T, p2pApi.datatype, 40);            \
  OFF(T, p2pApi.stream, 48);              \
  OFF(T, p2pApi.graphCaptured, 56);       \
  OFF(T, kernelLaunch.stream, 24)

static void check_profiler_v4_to_v6(void) {
  PROFILER_TABLE(ncclProfiler_v4_t);
  PROFILER_TABLE(ncclProfiler_v5_t);
  PROFILER_TABLE(ncclProfiler_v6_t);

  DESCR_HEADER(ncclProfilerEventDescr_v4_t, 104);
  COLL_V4_MEMBERS(ncclProfilerEventDescr_v4_t);
  PROXY_MEMBERS(ncclProfilerEventDescr_v4_t);
  SIZE(ncclProfilerCollDescr_v4_t, 80);
  SIZE(ncclProfilerP2pDescr_v4_t, 40);
  SIZE(ncclProfilerKernelChDescr_v4_t, 16);
  STATE_ARGS_V4(ncclProfilerEventStateArgs_v4_t);
  STATE_ARGS_V4(ncclProfilerEventStateArgs_v5_t);
  STATE_ARGS_V4(ncclProfilerEventStateArgs_v6_t);

  DESCR_HEADER(ncclProfilerEventDescr_v5_t, 112);
  COLL_V4_MEMBERS(ncclProfilerEventDescr_v5_t);
  API_V5_MEMBERS(ncclProfilerEventDescr_v5_t);
  PROXY_MEMBERS(ncclProfilerEventDescr_v5_t);
  SIZE(ncclProfilerCollDescr_v5_t, 88);
  SIZE(ncclProfilerP2pDescr_v5_t, 48);
  SIZE(ncclProfilerGroupApiDescr_v5_t, 8);
  SIZE(ncclProfilerCollApiDescr_v5_t, 48);
  SIZE(ncclProfilerP2pApiDescr_v5_t, 40);
  SIZE(ncclProfilerKernelLaunchDescr_v5_t, 8);

  DESCR_HEADER(ncclProfilerEventDescr_v6_t, 112);
  COLL_V4_MEMBERS(ncclProfilerEventDescr_v6_t);
  API_V5_MEMBERS(ncclProfilerEventDescr_v6_t);
  PROXY_MEMBERS(ncclProfilerEventDescr_v6_t);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.seqNumber, 24);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.func, 32);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.sendBuff, 40);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.recvBuff, 48);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.count, 56);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.root, 64);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.datatype, 72);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.syncStrategy, 80);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.intraBatchSync, 88);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.batchSize, 92);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.numBatches, 96);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.ceSeqNum, 100);
  OFF(ncclProfilerEventDescr_v6_t, ceColl.stream, 104);
  OFF(ncclProfilerEventDescr_v6_t, ceCollSync.isComplete, 24);
  OFF(ncclProfilerEventDescr_v6_t, ceCollSync.nRanks, 28);
  OFF(ncclProfilerEventDescr_v6_t, ceCollBatch.numOps, 24);
  OFF(ncclProfilerEventDescr_v6_t, ceCollBatch.totalBytes, 32);
  OFF(ncclProfilerEventDescr_v6_t, ceCollBatch.useIntraSync, 40);
  SIZE(ncclProfilerCeCollDescr_v6_t, 88);
  SIZE(ncclProfilerCeCollSyncDescr_v6_t, 8);
  SIZE(ncclProfilerCeCollBatchDescr_v6_t, 24);
}

/* Values that cross the ABI as plain numbers, each as the reference numbers it. */
static void check_constants(void) {
  SIZE(ncclProfilerEventState_t, 4);
  SIZE(ncclResult_t, 4);
  SIZE(ncclFunc_t, 4);
  SIZE(ncclDataType_t, 4);
  CONST(ncclSuccess, 0);
  CONST(ncclUnhandledCudaError, 1);
  CONST(ncclSystemError, 2);
  CONST(ncclInternalError, 3);
  CONST(ncclInvalidArgument, 4);
  CONST(ncclInvalidUsage, 5);
  CONST(ncclRemoteError, 6);
  CONST(ncclInProgress, 7);
  CONST(ncclTimeout, 8);
  CONST(ncclNumResults, 9);
  CONST(ncclFuncBroadcast, 0);
  CONST(ncclFuncReduce, 1);
  CONST(ncclFuncAllGather, 2);
  CONST(ncclFuncReduceScatter, 3);
  CONST(ncclFuncAllReduce, 4);
  CONST(ncclFuncSendRecv, 5);
  CONST(ncclFuncSend, 6);
  CONST(ncclFuncRecv, 7);
  CONST(ncclFuncAlltoAll, 8);
  CONST(ncclFuncScatter, 9);
  CONST(ncclFuncGather, 10);
  CONST(ncclFuncAllGatherV, 11);
  CONST(ncclFuncPutSignal, 12);
  CONST(ncclFuncSignal, 13);
  CONST(ncclFuncWaitSignal, 14);
  CONST(ncclNumFuncs, 15);
  CONST(NCCL_NUM_FUNCTIONS, 5);
  CONST(ncclInt8, 0);
  CONST(ncclUint8, 1);
  CONST(ncclInt32, 2);
  CONST(ncclUint32, 3);
  CONST(ncclInt64, 4);
  CONST(ncclUint64, 5);
  CONST(ncclFloat16, 6);
  CONST(ncclFloat32, 7);
  CONST(ncclFloat64, 8);
  CONST(ncclBfloat16, 9);
  CONST(ncclFloat8e4m3, 10);
  CONST(ncclFloat8e5m2, 11);
  CONST(NCCL_LOG_NONE, 0);
  CONST(NCCL_LOG_VERSION, 1);
  CONST(NCCL_LOG_WARN, 2);
  CONST(NCCL_LOG_INFO, 3);
  CONST(NCCL_LOG_ABORT, 4);
  CONST(NCCL_LOG_TRACE, 5);
  CONST(NCCL_INIT, 0x1);
  CONST(NCCL_COLL, 0x2);
  CONST(NCCL_P2P, 0x4);
  CONST(NCCL_SHM, 0x8);
  CONST(NCCL_NET, 0x10);
  CONST(NCCL_GRAPH, 0x20);
  CONST(NCCL_TUNING, 0x40);
  CONST(NCCL_ENV, 0x80);
  CONST(NCCL_ALLOC, 0x100);
  CONST(NCCL_CALL, 0x200);
  CONST(NCCL_PROXY, 0x400);
  CONST(NCCL_NVLS, 0x800);
  CONST(NCCL_BOOTSTRAP, 0x1000);
  CONST(NCCL_REG, 0x2000);
  CONST(NCCL_PROFILE, 0x4000);
  CONST(NCCL_RAS, 0x8000);
  CONST(NCCL_DESTROY, 0x10000);
  CONST(NCCL_ALLOC_HOST, 0x20000);
  CONST(ncclProfileGroup, 1);
  CONST(ncclProfileColl, 2);
  CONST(ncclProfileP2p, 4);
  CONST(ncclProfileProxyOp, 8);
  CONST(ncclProfileProxyStep, 16);
  CONST(ncclProfileProxyCtrl, 32);
  CONST(ncclProfileKernelCh, 64);
  CONST(ncclProfileNetPlugin, 128);
  CONST(ncclProfileGroupApi, 256);
  CONST(ncclProfileCollApi, 512);
  CONST(ncclProfileP2pApi, 1024);
  CONST(ncclProfileKernelLaunch, 2048);
  CONST(ncclProfileCeColl, 4096);
  CONST(ncclProfileCeSync, 8192);
  CONST(ncclProfileCeBatch, 16384);
  CONST(ncclProfilerProxyOpSendPosted, 0);
  CONST(ncclProfilerProxyOpSendRemFifoWait, 1);
  CONST(ncclProfilerProxyOpSendTransmitted, 2);
  CONST(ncclProfilerProxyOpSendDone, 3);
  CONST(ncclProfilerProxyOpRecvPosted, 4);
  CONST(ncclProfilerProxyOpRecvReceived, 5);
  CONST(ncclProfilerProxyOpRecvTransmitted, 6);
  CONST(ncclProfilerProxyOpRecvDone, 7);
  CONST(ncclProfilerProxyStepSendGPUWait, 8);
  CONST(ncclProfilerProxyStepSendWait, 9);
  CONST(ncclProfilerProxyStepRecvWait, 10);
  CONST(ncclProfilerProxyStepRecvFlushWait, 11);
  CONST(ncclProfilerProxyStepRecvGPUWait, 12);
  CONST(ncclProfilerProxyCtrlIdle, 13);
  CONST(ncclProfilerProxyCtrlActive, 14);
  CONST(ncclProfilerProxyCtrlSleep, 15);
  CONST(ncclProfilerProxyCtrlWakeup, 16);
  CONST(ncclProfilerProxyCtrlAppend, 17);
  CONST(ncclProfilerProxyCtrlAppendEnd, 18);
  CONST(ncclProfilerProxyOpInProgress_v4, 19);
  CONST(ncclProfilerProxyStepSendPeerWait_v4, 20);
  CONST(ncclProfilerNetPluginUpdate, 21);
  CONST(ncclProfilerKernelChStop, 22);
  CONST(ncclProfilerGroupStartApiStop, 23);
  CONST(ncclProfilerGroupEndApiStart, 24);
  CONST(ncclProfilerCeCollStart, 25);
  CONST(ncclProfilerCeCollComplete, 26);
  CONST(ncclProfilerCeSyncStart, 27);
  CONST(ncclProfilerCeSyncComplete, 28);
  CONST(ncclProfilerCeBatchStart, 29);
  CONST(ncclProfilerCeBatchComplete, 30);
  CONST(NCCL_ALGO_TREE, 0);
  CONST(NCCL_ALGO_RING, 1);
  CONST(NCCL_ALGO_COLLNET_DIRECT, 2);
  CONST(NCCL_ALGO_COLLNET_CHAIN, 3);
  CONST(NCCL_ALGO_NVLS, 4);
  CONST(NCCL_ALGO_NVLS_TREE, 5);
  CONST(NCCL_ALGO_PAT, 6);
  CONST(NCCL_NUM_ALGORITHMS, 7);
  CONST(NCCL_PROTO_LL, 0);
  CONST(NCCL_PROTO_LL128, 1);
  CONST(NCCL_PROTO_SIMPLE, 2);
  CONST(NCCL_NUM_PROTOCOLS, 3);
  CONST(NCCL_HW_NET, 2);
  CONST(NCCL_NUM_HW_LINKS, 3);
  CONST(NCCL_BLACKWELL_COMPCAP_IDX, 3);
  CONST(NCCL_NUM_COMPCAPS, 4);
  CONST(NCCL_TUNING_SCALE_4NODES, 2);
  CONST(NCCL_NUM_TUNING_SCALES, 3);
  CONST(NCCL_PROFILER_NET_TYPE_IB, 0x10000);
  CONST(NCCL_PROFILER_NET_TYPE_SOCK, 0x20000);
  CHECK(NCCL_ALGO_PROTO_IGNORE == -1.0f, "NCCL_ALGO_PROTO_IGNORE must be -1.0");
  /* The core compares cost entries against its own IGNORE constant. */
  CHECK(CP_COST_IGNORE == NCCL_ALGO_PROTO_IGNORE, "CP_COST_IGNORE differs from NCCL's IGNORE");
  CHECK_INT_EQ(CP_MAX_CHANNELS, 64);
}

int main(void) {
  if (sizeof(void*) != 8 || sizeof(long) != 8) {
    fprintf(stderr,
            "test_abi_layout: this platform is not LP64 (pointer %zu bytes, long %zu bytes); "
            "NCCL plugins exist only for 64-bit Linux, build cclpilot there\n",
            sizeof(void*), sizeof(long));
    return 1;
  }
  check_tuner();
  check_profiler_v1_to_v3();
  check_profiler_v4_to_v6();
  check_constants();
  TEST_RETURN();
}
