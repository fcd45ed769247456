#ifndef CLXENT_CHECK_H
#define CLXENT_CHECK_H
/* `clxent check ...`: argv[0] is "check". Returns the process exit code. */
int clxent_check_main(int argc, char **argv);
#endif
