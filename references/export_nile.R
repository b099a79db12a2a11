# Export the Nile series from R to mcem/datasets/nile.csv, and print R's own local-level fit.
#
#   Rscript references/export_nile.R            (from the repository root)
#
# Nile (R's datasets package): annual flow of the river Nile at Aswan, 1871-1970, 10^8 m^3;
#   Cobb (1978), Biometrika 65:243-251; Durbin & Koopman (2001), Time Series Analysis by State
#   Space Methods, the local-level example. Tested with R 4.2.2.
# StructTS(Nile, "level") maximises the local-level likelihood with a diffuse initial level
# (a different initial condition from mcem.models.local_level, whose x_0 ~ N(level0,
# sigma_level^2)); printed as a peer's figure only.
write.csv(data.frame(year = as.integer(time(Nile)), flow = as.numeric(Nile)),
          file.path("mcem", "datasets", "nile.csv"), row.names = FALSE, quote = FALSE)
fit <- StructTS(Nile, "level")
cat("StructTS level variance", fit$coef[["level"]], "observation variance", fit$coef[["epsilon"]],
    "loglik", fit$loglik, "\n")
