/*
 * spi_util.h — small helpers around SPI: plans prepared once per backend,
 * and reading nullable columns.
 */
#ifndef RM_SPI_UTIL_H
#define RM_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"

/* Prepare sql once per backend and keep the plan in *cache. */
extern SPIPlanPtr spi_cached_plan(SPIPlanPtr *cache, const char *sql,
								  int nargs, Oid *argtypes);

/*
 * The same, always with the generic plan: for a statement run many times a
 * second whose best plan does not depend on its parameters' values, so that
 * it is not planned again at every run (the plan cache does that whenever a
 * plan made for the values looks cheaper than the generic one).
 */
extern SPIPlanPtr spi_cached_generic_plan(SPIPlanPtr *cache, const char *sql,
										  int nargs, Oid *argtypes);

/* Run a cached plan; raise an error unless SPI answers expected. */
extern void spi_run(SPIPlanPtr plan, Datum *values, const char *nulls,
					bool read_only, long count, int expected);

/* Column colno (1-based) of row 0 of SPI_tuptable as text; NULL when SQL NULL. */
extern char *spi_text(int colno);

#endif
