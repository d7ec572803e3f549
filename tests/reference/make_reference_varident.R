# Regenerate the pinned nlme fits with a residual SD per group (varIdent) in
# tests/reference/varident/*.json.
#
#   Rscript tests/reference/make_reference_varident.R     (from the repository root)
#
# Needs R with nlme and jsonlite. Each file holds the fixed effects and their SEs, the SDs and
# correlation of the random effects, the residual SD of every group (sigma times nlme's
# varIdent ratio; the ratios' reference group does not matter), the log-likelihood and the
# method. The tests only read the JSON files; they never run R.
suppressPackageStartupMessages(library(nlme))
out <- "tests/reference/varident"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
ctrl <- lmeControl(msMaxIter = 500, maxIter = 500, tolerance = 1e-10, msTol = 1e-12,
                   niterEM = 100)

write_fit <- function(m, path, group) {
  ratios <- coef(m$modelStruct$varStruct, unconstrained = FALSE, allCoef = TRUE)
  vc <- unclass(getVarCov(m)); attributes(vc) <- list(dim = dim(vc))
  sd <- sqrt(diag(vc))
  jsonlite::write_json(list(
    method = m$method, formula = deparse(formula(m)), group = group,
    fixed = lapply(names(fixef(m)), function(t) list(
      term = t, estimate = unname(fixef(m)[t]), se = unname(sqrt(diag(vcov(m)))[t]))),
    sd_u = unname(sd), corr_u = unname(vc / outer(sd, sd)),
    sigma = as.list(m$sigma * ratios), loglik = as.numeric(logLik(m))),
    path, digits = NA, auto_unbox = TRUE, pretty = TRUE)
}

hsb <- read.csv("data/hsb.csv", colClasses = c(School = "character"))
for (method in c("REML", "ML")) {
  m <- lme(MathAch ~ SES, random = ~ SES | School, data = hsb, method = method,
           weights = varIdent(form = ~ 1 | Sector), control = ctrl)
  write_fit(m, file.path(out, paste0("hsb_sector_", tolower(method), ".json")), "Sector")
}
# Three groups: sleepstudy's days in three phases.
sleep <- read.csv("data/sleepstudy.csv", colClasses = c(Subject = "character"))
sleep$phase <- ifelse(sleep$Days < 3, "early", ifelse(sleep$Days < 7, "mid", "late"))
m <- lme(Reaction ~ Days, random = ~ Days | Subject, data = sleep, method = "REML",
         weights = varIdent(form = ~ 1 | phase), control = ctrl)
write_fit(m, file.path(out, "sleepstudy_phase_reml.json"), "phase")
writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
