# Peer fits of the three classic data sets, recorded once in references/peers_output.json:
#
#   Rscript references/peers.R            (from the repository root; reads the CSV files of
#                                          mcem/datasets, so the peers see exactly our data)
#
# * cbpp: lme4::glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial, nAGQ = 25)
# * epilepsy: lme4::glmer(y ~ lbase * trt + lage + V4 + (1 | subject), poisson, nAGQ = 25)
# * theophylline: nlme fm2Theo (first-order conditional linearisation, Lindstrom & Bates 1990),
#   method = "ML", with its fitted values and random effects (to check our prediction function).
# Tested with R 4.2.2, lme4 1.1-31, nlme 3.1-162, jsonlite 1.8.4.
suppressPackageStartupMessages({library(lme4); library(nlme); library(jsonlite)})
ds <- file.path("mcem", "datasets")
t0 <- proc.time()[["elapsed"]]
cbpp <- read.csv(file.path(ds, "cbpp.csv"))
cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period)
epil <- read.csv(file.path(ds, "epilepsy.csv"))
epil$trt <- factor(epil$trt, levels = c("placebo", "progabide"))
theo <- read.csv(file.path(ds, "theophylline.csv"))
theo <- groupedData(conc ~ Time | Subject, data = theo)

# With nAGQ > 1, glmer's logLik is the log-likelihood minus that of the saturated model (the
# deviance-residual scale); with nAGQ = 1 (Laplace) it is on the full scale. Both are recorded,
# with the saturated log-likelihood, so that loglik + saturated_loglik is the full one.
glmer_summary <- function(fit, secs, saturated) {
  b <- fixef(fit)
  list(peer = sprintf("lme4 %s glmer, nAGQ = %d", packageVersion("lme4"), fit@devcomp$dims[["nAGQ"]]),
       names = names(b), beta = unname(b), se_beta = unname(sqrt(diag(as.matrix(vcov(fit))))),
       sigma = attr(VarCorr(fit)[[1]], "stddev")[[1]], loglik = as.numeric(logLik(fit)),
       saturated_loglik = saturated,
       loglik_laplace = as.numeric(logLik(update(fit, nAGQ = 1))),
       seconds = secs)
}
timed <- function(expr) {
  s <- proc.time()[["elapsed"]]; v <- expr; list(value = v, seconds = proc.time()[["elapsed"]] - s)
}
g_cbpp <- timed(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial,
                      data = cbpp, nAGQ = 25))
g_epil <- timed(glmer(y ~ lbase * trt + lage + V4 + (1 | subject), family = poisson, data = epil,
                      nAGQ = 25))
f_theo <- timed(nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = theo,
                     fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1),
                     start = c(-2.5, 0.5, -3), method = "ML"))
fm <- f_theo$value
sds <- unname(sqrt(diag(as.matrix(fm$modelStruct$reStruct$Subject))) * fm$sigma)
ci <- intervals(fm, which = "var-cov")
re <- ranef(fm)
theo_out <- list(
  peer = sprintf("nlme %s nlme (fm2Theo), method = \"ML\"", packageVersion("nlme")),
  names = names(fixef(fm)), beta = unname(fixef(fm)), se_beta = unname(sqrt(diag(fm$varFix))),
  se_beta_summary = unname(summary(fm)$tTable[, "Std.Error"]),
  omega = sds, sigma = fm$sigma, loglik = as.numeric(logLik(fm)),
  omega_interval = unname(ci$reStruct$Subject[, c("lower", "upper")]),
  sigma_interval = unname(ci$sigma[c("lower", "upper")]),
  ranef_subject = as.integer(rownames(re)), ranef_lKa = re[, "lKa"], ranef_lCl = re[, "lCl"],
  fitted_subject = as.numeric(fitted(fm, level = 1)), seconds = f_theo$seconds)
out <- list(cbpp = glmer_summary(g_cbpp$value, g_cbpp$seconds,
                                 sum(dbinom(cbpp$incidence, cbpp$size, cbpp$incidence / cbpp$size, log = TRUE))),
            epilepsy = glmer_summary(g_epil$value, g_epil$seconds, sum(dpois(epil$y, epil$y, log = TRUE))),
            theophylline = theo_out,
            R = R.version.string)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path("references", "peers_output.json"))
print(summary(g_cbpp$value)); print(summary(g_epil$value)); print(summary(fm))
cat(sprintf("total %.1f s\n", proc.time()[["elapsed"]] - t0))
