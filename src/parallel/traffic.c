#include "parallel/traffic.h"

#include <string.h>

/* One rank's counters: process-wide, because ScaLAPACK's calls carry no context of ours. */
static mq_traffic counters;
static mq_traffic_phase current = MQ_TRAFFIC_OTHER;
static int measured;

static const char *const phase_names[] = {
#define MQ_TRAFFIC_NAME(e, name) #name,
    MQ_TRAFFIC_PHASE_LIST(MQ_TRAFFIC_NAME)
#undef MQ_TRAFFIC_NAME
};

const char *mq_traffic_phase_name(mq_traffic_phase p) {
  return (unsigned)p < MQ_TRAFFIC_PHASES ? phase_names[p] : "?";
}

mq_traffic_phase mq_traffic_enter(mq_traffic_phase p) {
  mq_traffic_phase prev = current;
  if ((unsigned)p < MQ_TRAFFIC_PHASES) current = p;
  return prev;
}

mq_traffic_phase mq_traffic_current(void) { return current; }

void mq_traffic_count(double bytes, double messages) {
  counters.bytes[current] += bytes;
  counters.messages[current] += messages;
}

void mq_traffic_snapshot(mq_traffic *out) { *out = counters; }

void mq_traffic_since(const mq_traffic *before, mq_traffic *delta) {
  for (int p = 0; p < MQ_TRAFFIC_PHASES; p++) {
    delta->bytes[p] = counters.bytes[p] - before->bytes[p];
    delta->messages[p] = counters.messages[p] - before->messages[p];
  }
}

void mq_traffic_reset(void) { memset(&counters, 0, sizeof counters); }

int mq_traffic_measured(void) { return measured; }
void mq_traffic_set_measured(int on) { measured = on != 0; }
