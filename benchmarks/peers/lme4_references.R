# Reference maximum-likelihood fits of classic mixed models by R's lme4, with glmmTMB and nlme
# as further peers, written to mcem/datasets/references_lme4.json (read by
# mcem.datasets.reference(name)):
#
#   Rscript benchmarks/peers/lme4_references.R        (from the repository root)
#
# Needs R with lme4, nlme, glmmTMB and jsonlite (Debian: r-cran-lme4 r-cran-nlme r-cran-glmmtmb
# r-cran-jsonlite). The fits read the CSV files of mcem/datasets, so they see exactly the data the
# Python package ships (benchmarks/peers/export_lme4_data.R wrote them from lme4's data sets).
# Takes about a minute.
#
# Each entry's "formula" is the model formula as written in R and "call" the whole call. Every fit
# is by maximum likelihood (lmer with REML = FALSE, lme with method = "ML", glmmTMB with
# REML = FALSE). Each entry holds: the formula as written in R, the method, the fixed effects with
# their standard errors (the inverse observed information of the fixed effects at the estimated
# variance components, as vcov() gives them), the random-effect standard deviations and
# correlations, the residual standard deviation of the Gaussian models, the log-likelihood, the
# versions used, and the seconds the fit took (system.time elapsed, median of 5 runs).
#
# Parameter names: "beta" (fixed effects, named by "names"), "sd_<group>" (the standard deviations
# of a grouping factor's effects, labelled in "labels"), "cor_<group>" (their correlation matrix,
# for correlated terms), "sigma" (residual SD). Nested (1 | a/b) gives groups "a" and "a:b".
#
# glmer's logLik with nAGQ > 1 is on the deviance-residual scale (the log-likelihood minus the
# saturated model's); it is recorded as "loglik_reported" and "loglik" = loglik_reported +
# saturated_loglik is the full log-likelihood (Laplace fits, nAGQ = 1, already report that).
#
# Tested with R 4.2.2, lme4 1.1-31, nlme 3.1-162, glmmTMB 1.1.5 (TMB 1.9.2), jsonlite 1.8.4.
suppressPackageStartupMessages({
  library(lme4); library(nlme); library(glmmTMB); library(jsonlite)
})
ds <- file.path("mcem", "datasets")
script <- "benchmarks/peers/lme4_references.R"
REPEATS <- 5L
t_start <- proc.time()[["elapsed"]]

read_ds <- function(name, factors) {
  d <- read.csv(file.path(ds, name), colClasses = "character")
  for (v in names(d)) d[[v]] <- if (v %in% factors) factor(d[[v]]) else as.numeric(d[[v]])
  d
}
sleep <- read_ds("sleepstudy.csv", "Subject")
penicillin <- read_ds("penicillin.csv", c("plate", "sample"))
pastes <- read_ds("pastes.csv", c("batch", "cask", "sample"))
cbpp <- read_ds("cbpp.csv", c("herd", "period"))
grouse <- read_ds("grouseticks.csv", c("INDEX", "BROOD", "YEAR", "LOCATION"))

versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                 nlme = as.character(packageVersion("nlme")),
                 glmmTMB = as.character(packageVersion("glmmTMB")),
                 TMB = as.character(packageVersion("TMB")),
                 Matrix = as.character(packageVersion("Matrix")),
                 BLAS = sessionInfo()$BLAS, LAPACK = sessionInfo()$LAPACK)

# Runs `f` REPEATS times; the last value and the median elapsed seconds.
timed <- function(f) {
  secs <- numeric(REPEATS)
  for (i in seq_len(REPEATS)) {
    secs[i] <- system.time(value <- f())[["elapsed"]]
  }
  list(value = value, seconds = median(secs), seconds_all = secs)
}

# Variance components from a list of groups, each list(name, sd (named), cor matrix or NULL).
# Groups split by lme4's || ("g", "g.1", ...) are merged into one diagonal group "g".
components <- function(groups, rename = list(), correlated = TRUE) {
  params <- list(); labels <- list(); varcorr <- list()
  for (g in groups) {
    name <- sub("\\.[0-9]+$", "", g$name)
    if (!is.null(rename[[name]])) name <- rename[[name]]
    key <- paste0("sd_", name)
    params[[key]] <- I(c(params[[key]], unname(g$sd)))
    labels[[key]] <- I(c(labels[[key]], names(g$sd)))
    for (j in seq_along(g$sd)) {
      varcorr[[length(varcorr) + 1]] <- list(group = name, var1 = names(g$sd)[j], var2 = NA,
                                             sdcor = unname(g$sd[j]))
    }
    if (correlated && length(g$sd) > 1) {
      params[[paste0("cor_", name)]] <- unname(g$cor)
      for (j in 1:(length(g$sd) - 1)) for (k in (j + 1):length(g$sd)) {
        varcorr[[length(varcorr) + 1]] <- list(group = name, var1 = names(g$sd)[j],
                                               var2 = names(g$sd)[k], sdcor = g$cor[j, k])
      }
    }
  }
  list(params = params, labels = labels, varcorr = varcorr)
}
merge_groups <- function(vc) {  # lme4 / glmmTMB VarCorr list -> groups
  lapply(names(vc), function(n) list(name = n, sd = attr(vc[[n]], "stddev"),
                                     cor = attr(vc[[n]], "correlation")))
}

# One entry (or peer): fixed effects, variance components, log-likelihood, timing.
entry <- function(peer, method, beta, se_beta, comp, sigma, loglik, t, converged, messages,
                  extra = list()) {
  params <- c(list(beta = I(unname(beta))), comp$params)
  labels <- c(list(beta = I(names(beta))), comp$labels)
  if (!is.null(sigma)) params$sigma <- sigma
  c(list(peer = peer, method = method, names = I(names(beta)), params = params, labels = labels,
         se = list(beta = I(unname(se_beta))), varcorr = comp$varcorr, loglik = loglik,
         converged = converged, messages = I(as.character(messages)),
         seconds = t$seconds, seconds_all = I(t$seconds_all)), extra)
}

lme4_entry <- function(t, rename = list(), correlated = TRUE, saturated = NULL) {
  fit <- t$value
  is_glmm <- isGLMM(fit)
  nagq <- if (is_glmm) fit@devcomp$dims[["nAGQ"]] else NA
  how <- if (is_glmm) {
    sprintf("lme4 %s glmer, nAGQ = %d (%s)", versions$lme4, nagq,
            if (nagq == 1) "Laplace approximation" else "adaptive Gauss-Hermite quadrature")
  } else {
    sprintf("lme4 %s lmer, REML = FALSE (maximum likelihood)", versions$lme4)
  }
  ll <- as.numeric(logLik(fit))
  extra <- list()
  if (is_glmm && nagq > 1) {
    extra <- list(loglik_reported = ll, saturated_loglik = saturated)
    ll <- ll + saturated
  }
  msgs <- c(fit@optinfo$conv$lme4$messages, fit@optinfo$warnings)
  entry(sprintf("lme4 %s", versions$lme4), how, fixef(fit), sqrt(diag(as.matrix(vcov(fit)))),
        components(merge_groups(VarCorr(fit)), rename, correlated),
        if (is_glmm) NULL else sigma(fit), ll, t,
        length(msgs) == 0 && fit@optinfo$conv$opt == 0, msgs, extra)
}

tmb_entry <- function(t, rename = list(), correlated = TRUE) {
  fit <- t$value
  gauss <- family(fit)$family == "gaussian"
  msgs <- c(if (fit$fit$convergence != 0) fit$fit$message,
            if (!isTRUE(fit$sdr$pdHess)) "non-positive-definite Hessian")
  entry(sprintf("glmmTMB %s (TMB %s)", versions$glmmTMB, versions$TMB),
        sprintf("glmmTMB %s, REML = FALSE, Laplace approximation (exact for a Gaussian model)",
                versions$glmmTMB),
        fixef(fit)$cond, sqrt(diag(vcov(fit)$cond)),
        components(merge_groups(VarCorr(fit)$cond), rename, correlated),
        if (gauss) sigma(fit) else NULL, as.numeric(logLik(fit)), t, length(msgs) == 0, msgs)
}

nlme_entry <- function(t, groups, call, correlated = TRUE) {
  fit <- t$value
  entry(sprintf("nlme %s", versions$nlme), sprintf("nlme %s %s, method = \"ML\"", versions$nlme, call),
        fixef(fit), sqrt(diag(vcov(fit))), components(groups, correlated = correlated), fit$sigma,
        as.numeric(logLik(fit)), t, TRUE, character(0))
}
# SDs and correlations of one level of an lme fit's reStruct.
nlme_group <- function(fit, level, name, pick = NULL) {
  m <- as.matrix(fit$modelStruct$reStruct[[level]]) * fit$sigma^2
  if (!is.null(pick)) m <- m[pick, pick, drop = FALSE]
  sd <- sqrt(diag(m)); names(sd) <- colnames(m)
  list(name = name, sd = sd, cor = cov2cor(m))
}

top <- function(main, formula_r, call, data, family, peers) {
  c(list(formula = formula_r, call = call, data = data, family = family, script = script,
         versions = versions),
    main, list(peers = peers))
}
out <- list()

# --- sleepstudy: correlated random intercept and slope ---------------------------------------------
f_ss <- Reaction ~ Days + (Days | Subject)
l4 <- timed(function() lmer(f_ss, data = sleep, REML = FALSE))
tm <- timed(function() glmmTMB(f_ss, data = sleep, REML = FALSE))
nl <- timed(function() lme(Reaction ~ Days, random = ~ Days | Subject, data = sleep, method = "ML"))
out$sleepstudy_lme4 <- top(
  lme4_entry(l4), "Reaction ~ Days + (Days | Subject)",
  "lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)",
  "mcem.datasets.load_sleepstudy()", "gaussian",
  list(glmmTMB = tmb_entry(tm),
       nlme_lme = nlme_entry(nl, list(nlme_group(nl$value, "Subject", "Subject")),
                             "lme(Reaction ~ Days, random = ~ Days | Subject)")))

# --- sleepstudy: uncorrelated random intercept and slope --------------------------------------------
l4 <- timed(function() lmer(Reaction ~ Days + (Days || Subject), data = sleep, REML = FALSE))
tm <- timed(function() glmmTMB(Reaction ~ Days + diag(Days | Subject), data = sleep, REML = FALSE))
nl <- timed(function() lme(Reaction ~ Days, random = list(Subject = pdDiag(~ Days)), data = sleep,
                           method = "ML"))
out$sleepstudy_uncorrelated_lme4 <- top(
  lme4_entry(l4, correlated = FALSE), "Reaction ~ Days + (Days || Subject)",
  "lmer(Reaction ~ Days + (Days || Subject), data = sleepstudy, REML = FALSE)",
  "mcem.datasets.load_sleepstudy()", "gaussian",
  list(glmmTMB = c(tmb_entry(tm, correlated = FALSE),
                   list(formula = "Reaction ~ Days + diag(Days | Subject)")),
       nlme_lme = nlme_entry(nl, list(nlme_group(nl$value, "Subject", "Subject")),
                             "lme(Reaction ~ Days, random = list(Subject = pdDiag(~ Days)))",
                             correlated = FALSE)))

# --- Penicillin: crossed random intercepts ----------------------------------------------------------
f_pe <- diameter ~ 1 + (1 | plate) + (1 | sample)
l4 <- timed(function() lmer(f_pe, data = penicillin, REML = FALSE))
tm <- timed(function() glmmTMB(f_pe, data = penicillin, REML = FALSE))
penicillin$all <- factor(1)
nl <- timed(function() lme(diameter ~ 1, data = penicillin, method = "ML",
                           random = list(all = pdBlocked(list(pdIdent(~ plate - 1),
                                                              pdIdent(~ sample - 1))))))
np <- nlevels(penicillin$plate)
g_pl <- nlme_group(nl$value, "all", "plate", 1); names(g_pl$sd) <- "(Intercept)"
g_sa <- nlme_group(nl$value, "all", "sample", np + 1); names(g_sa$sd) <- "(Intercept)"
out$penicillin_lme4 <- top(
  lme4_entry(l4), "diameter ~ 1 + (1 | plate) + (1 | sample)",
  "lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = Penicillin, REML = FALSE)",
  "mcem.datasets.load_penicillin()", "gaussian",
  list(glmmTMB = tmb_entry(tm),
       nlme_lme = nlme_entry(nl, list(g_pl, g_sa),
                             "lme(diameter ~ 1, random = list(all = pdBlocked(list(pdIdent(~ plate - 1), pdIdent(~ sample - 1))))) with all = factor(1) (crossed effects)")))

# --- Pastes: nested random intercepts ---------------------------------------------------------------
f_pa <- strength ~ 1 + (1 | batch/cask)
nest <- list("cask:batch" = "batch:cask")
l4 <- timed(function() lmer(f_pa, data = pastes, REML = FALSE))
tm <- timed(function() glmmTMB(f_pa, data = pastes, REML = FALSE))
nl <- timed(function() lme(strength ~ 1, random = ~ 1 | batch/cask, data = pastes, method = "ML"))
out$pastes_lme4 <- top(
  lme4_entry(l4, rename = nest), "strength ~ 1 + (1 | batch/cask)",
  "lmer(strength ~ 1 + (1 | batch/cask), data = Pastes, REML = FALSE)",
  "mcem.datasets.load_pastes()", "gaussian",
  list(glmmTMB = tmb_entry(tm, rename = nest),
       nlme_lme = nlme_entry(nl, list(nlme_group(nl$value, "batch", "batch"),
                                      nlme_group(nl$value, "cask", "batch:cask")),
                             "lme(strength ~ 1, random = ~ 1 | batch/cask)")))

# --- cbpp: binomial GLMM, random herd intercept -----------------------------------------------------
f_cb <- cbind(incidence, size - incidence) ~ period + (1 | herd)
sat_cb <- sum(dbinom(cbpp$incidence, cbpp$size, cbpp$incidence / cbpp$size, log = TRUE))
q25 <- timed(function() glmer(f_cb, family = binomial, data = cbpp, nAGQ = 25))
lap <- timed(function() glmer(f_cb, family = binomial, data = cbpp, nAGQ = 1))
# With its default PIRLS tolerance (tolPwrss = 1e-7) glmer's Laplace log-likelihood of cbpp is
# 2.8e-4 below the Laplace approximation at its own estimates; tolPwrss = 1e-10 removes that.
tight <- timed(function() glmer(f_cb, family = binomial, data = cbpp, nAGQ = 1,
                                control = glmerControl(tolPwrss = 1e-10)))
tm <- timed(function() glmmTMB(f_cb, family = binomial, data = cbpp))
out$cbpp_lme4 <- top(
  lme4_entry(q25, saturated = sat_cb),
  "cbind(incidence, size - incidence) ~ period + (1 | herd)",
  "glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp, nAGQ = 25)",
  "mcem.datasets.load_cbpp(as_frame=True)", "binomial (logit link)",
  list(lme4_laplace = lme4_entry(lap),
       lme4_laplace_tolPwrss = c(lme4_entry(tight), list(control = "glmerControl(tolPwrss = 1e-10)")),
       glmmTMB = tmb_entry(tm)))

# --- grouseticks: Poisson GLMM, crossed random intercepts -------------------------------------------
# glmer allows nAGQ > 1 only for a single scalar random effect: Laplace here.
f_gt <- TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)
lap <- timed(function() glmer(f_gt, family = poisson, data = grouse))
tm <- timed(function() glmmTMB(f_gt, family = poisson, data = grouse))
out$grouseticks_lme4 <- top(
  lme4_entry(lap), "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
  "glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), family = poisson, data = grouseticks)",
  "mcem.datasets.load_grouseticks()", "poisson (log link)",
  list(glmmTMB = tmb_entry(tm)))

path <- file.path(ds, "references_lme4.json")
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"), path)
for (n in names(out)) {
  e <- out[[n]]
  cat(sprintf("%-30s loglik %.4f  %.3f s  converged %s\n", n, e$loglik, e$seconds, e$converged))
  for (p in names(e$peers)) {
    cat(sprintf("  %-28s loglik %.4f  %.3f s  converged %s\n", p, e$peers[[p]]$loglik,
                e$peers[[p]]$seconds, e$peers[[p]]$converged))
  }
}
cat(sprintf("wrote %s in %.1f s\n", path, proc.time()[["elapsed"]] - t_start))
