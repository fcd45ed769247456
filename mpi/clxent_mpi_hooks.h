/*
 * Test hooks of clxent_mpi, compiled only into the test build of mpi/clxent_mpi.c
 * (CLXENT_MPI_TEST_HOOKS; the static library clxent_mpi_hooks of tests/CMakeLists.txt), never
 * into the installed libclxent_mpi. Per process, not per thread.
 */
#ifndef CLXENT_MPI_HOOKS_H
#define CLXENT_MPI_HOOKS_H

/* The nth host allocation of clxent_mpi from now on fails (returns NULL); 0: none fails. */
void clxent_mpi_test_fail_alloc(long nth);
/* The site of the allocation that was made to fail since the last clxent_mpi_test_fail_alloc(),
 * or NULL if none was. */
const char *clxent_mpi_test_failed_site(void);

/* The paths the last call took (cleared at the start of each call). */
#define CLXENT_MPI_PATH_WEIGHTS_SHARED 1u /* Σ w_{y_i} not exact in double: the rows' weights gathered */
unsigned clxent_mpi_test_paths(void);

#endif
