# Times R's peers on a logistic random-intercept model, for comparison with mcem's GLMM fits:
#
#   Rscript benchmarks/peers/glmm_timing.R DATA.csv [REPEATS] [OUT.json]
#
# DATA.csv has columns y (0/1), x (numeric) and group (any labels). Fits
#   glmer(y ~ x + (1 | group), family = binomial)              nAGQ = 1 (Laplace)
#   glmer(y ~ x + (1 | group), family = binomial, nAGQ = 10)   adaptive Gauss-Hermite quadrature
#   glmmTMB(y ~ x + (1 | group), family = binomial)            Laplace (TMB)
# each REPEATS times (default 5), and prints JSON (and writes it to OUT.json if given) with, per
# fit, the estimates (beta with names, sd_group), the standard errors of beta, the log-likelihood
# on the full scale (glmer's logLik with nAGQ > 1 omits the saturated model's log-likelihood, which
# is added back; for 0/1 data it is 0), whether it converged, and the median and all elapsed
# seconds (system.time: elapsed, and user + system CPU as cpu_seconds); plus the R and package
# versions, the BLAS and LAPACK in use
# (sessionInfo()), the thread settings (OMP_NUM_THREADS and the BLAS variables, TMB's OpenMP
# threads, glmmTMB's `parallel`) and the number of cores.
#
# Needs R with lme4, glmmTMB and jsonlite (Debian: r-cran-lme4 r-cran-glmmtmb r-cran-jsonlite).
# Tested with R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5 (TMB 1.9.2), jsonlite 1.8.4.
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(jsonlite)})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1 || length(args) > 3) {
  stop("usage: Rscript benchmarks/peers/glmm_timing.R DATA.csv [REPEATS] [OUT.json]", call. = FALSE)
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
if (!all(d$y %in% c(0, 1))) stop("DATA.csv: y must be 0 or 1 in every row", call. = FALSE)
if (!is.numeric(d$x) || anyNA(d$x)) {
  stop(sprintf("DATA.csv: x must be numeric in every row, got %s such as '%s'", class(d$x)[[1]],
               d$x[[1]]), call. = FALSE)
}
d$group <- factor(d$group)

timed <- function(f) {
  secs <- cpu <- numeric(repeats)
  for (i in seq_len(repeats)) {
    st <- system.time(value <- f())
    secs[i] <- st[["elapsed"]]
    cpu[i] <- st[["user.self"]] + st[["sys.self"]]
  }
  list(value = value, seconds = median(secs), seconds_all = secs, cpu_seconds = median(cpu),
       cpu_seconds_all = cpu)
}
saturated <- sum(dbinom(d$y, 1, d$y, log = TRUE))

glmer_out <- function(t) {
  fit <- t$value
  nagq <- fit@devcomp$dims[["nAGQ"]]
  ll <- as.numeric(logLik(fit))
  msgs <- c(fit@optinfo$conv$lme4$messages, fit@optinfo$warnings)
  list(fit = sprintf("lme4 %s glmer, nAGQ = %d", packageVersion("lme4"), nagq),
       names = I(names(fixef(fit))), beta = I(unname(fixef(fit))),
       se_beta = I(unname(sqrt(diag(as.matrix(vcov(fit)))))),
       sd_group = attr(VarCorr(fit)$group, "stddev")[[1]],
       loglik = if (nagq > 1) ll + saturated else ll, loglik_reported = ll,
       converged = length(msgs) == 0 && fit@optinfo$conv$opt == 0, messages = I(as.character(msgs)),
       seconds = t$seconds, seconds_all = I(t$seconds_all),
       cpu_seconds = t$cpu_seconds, cpu_seconds_all = I(t$cpu_seconds_all))
}
tmb_out <- function(t) {
  fit <- t$value
  ok <- fit$fit$convergence == 0 && isTRUE(fit$sdr$pdHess)
  list(fit = sprintf("glmmTMB %s (TMB %s), Laplace", packageVersion("glmmTMB"), packageVersion("TMB")),
       names = I(names(fixef(fit)$cond)), beta = I(unname(fixef(fit)$cond)),
       se_beta = I(unname(sqrt(diag(vcov(fit)$cond)))),
       sd_group = attr(VarCorr(fit)$cond$group, "stddev")[[1]],
       loglik = as.numeric(logLik(fit)), converged = ok,
       messages = I(if (ok) character(0) else as.character(fit$fit$message)),
       seconds = t$seconds, seconds_all = I(t$seconds_all),
       cpu_seconds = t$cpu_seconds, cpu_seconds_all = I(t$cpu_seconds_all))
}

f <- y ~ x + (1 | group)
tmb_parallel <- glmmTMBControl()$parallel
fits <- list(
  glmer_laplace = glmer_out(timed(function() glmer(f, family = binomial, data = d))),
  glmer_nAGQ10 = glmer_out(timed(function() glmer(f, family = binomial, data = d, nAGQ = 10))),
  glmmTMB = tmb_out(timed(function() glmmTMB(f, family = binomial, data = d))))

si <- sessionInfo()
cpu <- tryCatch({
  m <- grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)
  if (length(m)) sub("^model name\\s*:\\s*", "", m[[1]]) else NA
}, error = function(e) NA, warning = function(w) NA)
env <- function(v) { x <- Sys.getenv(v, unset = NA); if (is.na(x)) NULL else x }
out <- list(
  data = list(path = path, n_obs = nrow(d), n_groups = nlevels(d$group), mean_y = mean(d$y)),
  formula = "y ~ x + (1 | group), binomial (logit link)", repeats = repeats, fits = fits,
  R = R.version.string,
  versions = list(lme4 = as.character(packageVersion("lme4")),
                  glmmTMB = as.character(packageVersion("glmmTMB")),
                  TMB = as.character(packageVersion("TMB")),
                  Matrix = as.character(packageVersion("Matrix"))),
  BLAS = si$BLAS, LAPACK = si$LAPACK,
  threads = list(OMP_NUM_THREADS = env("OMP_NUM_THREADS"),
                 OPENBLAS_NUM_THREADS = env("OPENBLAS_NUM_THREADS"),
                 MKL_NUM_THREADS = env("MKL_NUM_THREADS"),
                 BLIS_NUM_THREADS = env("BLIS_NUM_THREADS"),
                 TMB_openmp = as.integer(TMB::openmp()),
                 glmmTMB_parallel = if (is.null(tmb_parallel)) NA else tmb_parallel,
                 cores = parallel::detectCores()),
  machine = list(sysname = Sys.info()[["sysname"]], release = Sys.info()[["release"]],
                 cpu = cpu))
json <- toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null", null = "null")
writeLines(json)
if (length(args) == 3) writeLines(json, args[[3]])
