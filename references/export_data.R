# Export three classic data sets from R to the CSV files of mcem/datasets.
#
#   Rscript references/export_data.R            (from the repository root)
#
# Theoph (R's datasets package): Boeckmann, Sheiner & Beal (1994), NONMEM Users Guide Part V, UCSF;
#   12 subjects, 11 concentrations each; Dose in mg/kg as in R (and nlme's examples).
# cbpp (lme4): Lesnoff et al. (2004), Preventive Veterinary Medicine 64:27-40; 15 herds, 4 periods.
# epil (MASS): Thall & Vail (1990), Biometrics 46:657-671; Breslow & Clayton (1993), JASA 88:9-25;
#   59 patients, 4 two-week periods.
# Tested with R 4.2.2, lme4 1.1-31, MASS 7.3-58.2.
suppressPackageStartupMessages({library(lme4); library(MASS)})
out <- file.path("mcem", "datasets")
write_plain <- function(df, name) {
  write.csv(df, file.path(out, name), row.names = FALSE, quote = FALSE)
}
th <- datasets::Theoph
write_plain(data.frame(Subject = as.integer(as.character(th$Subject)), Wt = th$Wt, Dose = th$Dose,
                       Time = th$Time, conc = th$conc), "theophylline.csv")
cb <- lme4::cbpp
write_plain(data.frame(herd = as.integer(as.character(cb$herd)), incidence = cb$incidence,
                       size = cb$size, period = as.integer(as.character(cb$period))), "cbpp.csv")
ep <- MASS::epil
write_plain(data.frame(y = ep$y, trt = as.character(ep$trt), base = ep$base, age = ep$age, V4 = ep$V4,
                       subject = ep$subject, period = ep$period,
                       lbase = sprintf("%.15g", ep$lbase), lage = sprintf("%.15g", ep$lage)), "epilepsy.csv")
cat("rows:", nrow(th), nrow(cb), nrow(ep), "\n")
