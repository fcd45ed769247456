#ifndef CLXENT_BENCH_H
#define CLXENT_BENCH_H
/* `clxent bench ...`: argv[0] is "bench". Returns the process exit code. */
int clxent_bench_main(int argc, char **argv);
#endif
