# Times lme4's lmer on a linear mixed model with a correlated random intercept and slope, for
# comparison with mcem's Gaussian formula models (benchmarks/bench_lmm.py):
#
#   Rscript benchmarks/peers/lmm_timing.R DATA.csv [REPEATS] [OUT.json]
#
# DATA.csv has columns y (numeric), x (numeric) and group (any labels). Fits
#   lmer(y ~ x + (x | group), REML = FALSE)
# REPEATS times (default 5) and prints JSON (and writes it to OUT.json if given) with the
# estimates (beta with names, the standard errors of beta, the standard deviations of the
# intercept and slope, their correlation, the residual sd), the maximised log-likelihood, whether
# the fit reported convergence problems, the median and all elapsed seconds of the fit call and
# its CPU seconds (system.time: user + system), the R and lme4 versions, the BLAS and LAPACK in
# use (sessionInfo()) and the thread settings.
#
# Needs R with lme4 and jsonlite. Tested with R 4.2.2, lme4 1.1-31, jsonlite 1.8.4.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1 || length(args) > 3) {
  stop("usage: Rscript benchmarks/peers/lmm_timing.R DATA.csv [REPEATS] [OUT.json]", call. = FALSE)
}
path <- args[[1]]
repeats <- if (length(args) >= 2) suppressWarnings(as.integer(args[[2]])) else 5L
if (is.na(repeats) || repeats < 1) {
  stop(sprintf("REPEATS must be a positive integer, got '%s'", args[[2]]), call. = FALSE)
}
if (!file.exists(path)) stop(sprintf("DATA.csv: no file '%s'", path), call. = FALSE)
d <- read.csv(path, colClasses = c(group = "character"))
missing_cols <- setdiff(c("y", "x", "group"), names(d))
if (length(missing_cols)) {
  stop(sprintf("DATA.csv must have columns y, x, group; '%s' has %s (missing %s)", path,
               paste(names(d), collapse = ", "), paste(missing_cols, collapse = ", ")), call. = FALSE)
}
for (v in c("y", "x")) {
  if (!is.numeric(d[[v]]) || anyNA(d[[v]])) {
    stop(sprintf("DATA.csv: %s must be numeric in every row, got %s", v, class(d[[v]])[[1]]), call. = FALSE)
  }
}
d$group <- factor(d$group)

secs <- cpu <- numeric(repeats)
for (i in seq_len(repeats)) {
  st <- system.time(fit <- lmer(y ~ x + (x | group), data = d, REML = FALSE))
  secs[i] <- st[["elapsed"]]
  cpu[i] <- st[["user.self"]] + st[["sys.self"]]
}
vc <- VarCorr(fit)$group
msgs <- c(fit@optinfo$conv$lme4$messages, fit@optinfo$warnings)
si <- sessionInfo()
env <- function(v) { x <- Sys.getenv(v, unset = NA); if (is.na(x)) NULL else x }
out <- list(
  data = list(path = path, n_obs = nrow(d), n_groups = nlevels(d$group)),
  formula = "y ~ x + (x | group), REML = FALSE", repeats = repeats,
  fit = sprintf("lme4 %s lmer, REML = FALSE", packageVersion("lme4")),
  names = I(names(fixef(fit))), beta = I(unname(fixef(fit))),
  se_beta = I(unname(sqrt(diag(as.matrix(vcov(fit)))))),
  sd_group = I(unname(attr(vc, "stddev"))), cor_group = unname(attr(vc, "correlation")[1, 2]),
  sigma = sigma(fit), loglik = as.numeric(logLik(fit)),
  converged = length(msgs) == 0, messages = I(as.character(msgs)),
  seconds = median(secs), seconds_all = I(secs), cpu_seconds = median(cpu), cpu_seconds_all = I(cpu),
  R = R.version.string, versions = list(lme4 = as.character(packageVersion("lme4")),
                                        Matrix = as.character(packageVersion("Matrix"))),
  BLAS = si$BLAS, LAPACK = si$LAPACK,
  threads = list(OMP_NUM_THREADS = env("OMP_NUM_THREADS"), OPENBLAS_NUM_THREADS = env("OPENBLAS_NUM_THREADS"),
                 cores = parallel::detectCores()))
json <- toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null", null = "null")
writeLines(json)
if (length(args) == 3) writeLines(json, args[[3]])
