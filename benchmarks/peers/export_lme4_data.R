# Export four classic mixed-model data sets of R's lme4 to the CSV files of mcem/datasets, and
# check that mcem/datasets/cbpp.csv holds lme4's cbpp.
#
#   Rscript benchmarks/peers/export_lme4_data.R        (from the repository root)
#
# sleepstudy: Belenky et al. (2003), Journal of Sleep Research 12:1-12; 18 subjects x 10 days.
# Penicillin: Davies & Goldsmith (1972), Statistical Methods in Research and Production, sec. 6.6;
#   24 plates x 6 samples (crossed).
# Pastes: Davies & Goldsmith (1972), sec. 6.5; 10 batches x 3 casks x 2 assays (nested).
# grouseticks: Elston, Moss, Boulinier, Arrowsmith & Lambin (2001), Parasitology 122:563-569;
#   403 chicks in 118 broods at 63 locations, 3 years.
# Numbers are written with the fewest significant digits (at most 17) such that reading a file back gives R's doubles
# exactly; factors are written as their labels (no quotes: no label holds a comma).
# Tested with R 4.2.2, lme4 1.1-31.
suppressPackageStartupMessages(library(lme4))
out <- file.path("mcem", "datasets")
exact <- function(x) {  # the fewest significant digits (15, 16 or 17) that read back exactly
  s <- sprintf("%.15g", x)
  for (d in 16:17) {
    bad <- as.numeric(s) != x
    s[bad] <- sprintf(paste0("%.", d, "g"), x[bad])
  }
  s
}
write_plain <- function(df, name) {
  write.csv(df, file.path(out, name), row.names = FALSE, quote = FALSE)
  back <- read.csv(file.path(out, name), colClasses = "character")
  stopifnot(identical(dim(back), dim(df)))
  cat(sprintf("%-16s %4d rows  %s\n", name, nrow(df), paste(names(df), collapse = ", ")))
}
ss <- lme4::sleepstudy
write_plain(data.frame(Reaction = exact(ss$Reaction), Days = exact(ss$Days),
                       Subject = as.character(ss$Subject)), "sleepstudy.csv")
pe <- lme4::Penicillin
write_plain(data.frame(diameter = exact(pe$diameter), plate = as.character(pe$plate),
                       sample = as.character(pe$sample)), "penicillin.csv")
pa <- lme4::Pastes
write_plain(data.frame(strength = exact(pa$strength), batch = as.character(pa$batch),
                       cask = as.character(pa$cask), sample = as.character(pa$sample)), "pastes.csv")
gt <- lme4::grouseticks
write_plain(data.frame(INDEX = as.character(gt$INDEX), TICKS = exact(gt$TICKS),
                       BROOD = as.character(gt$BROOD), HEIGHT = exact(gt$HEIGHT),
                       YEAR = as.character(gt$YEAR), LOCATION = as.character(gt$LOCATION),
                       cHEIGHT = exact(gt$cHEIGHT)), "grouseticks.csv")

# The files read back equal lme4's data (numbers exactly, factors as labels).
same <- function(name, orig) {
  back <- read.csv(file.path(out, name), colClasses = "character")
  for (v in names(back)) {
    ok <- if (is.numeric(orig[[v]])) identical(as.numeric(back[[v]]), as.numeric(orig[[v]]))
          else identical(back[[v]], as.character(orig[[v]]))
    if (!ok) stop(sprintf("%s: column %s differs from lme4's", name, v))
  }
  TRUE
}
stopifnot(same("sleepstudy.csv", ss), same("penicillin.csv", pe), same("pastes.csv", pa),
          same("grouseticks.csv", gt[, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION", "cHEIGHT")]))
# cbpp.csv (written earlier by references/export_data.R) holds lme4's cbpp.
stopifnot(same("cbpp.csv", lme4::cbpp))
cat("all files equal lme4", as.character(packageVersion("lme4")), "data; cbpp.csv matches lme4::cbpp\n")
