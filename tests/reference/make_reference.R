# Regenerate the pinned lme4 / nlme reference fits in tests/reference/*.json.
#
#   Rscript tests/reference/make_reference.R     (from the repository root)
#
# Needs R with lme4, nlme and jsonlite (Debian: apt-get install r-cran-lme4 r-cran-nlme
# r-cran-jsonlite). The tests only read the JSON files; they never run R.
suppressPackageStartupMessages({
  library(lme4)
  library(nlme)
})
source("scripts/write_reml_json.R")
out <- "tests/reference"
# lme4's default optimiser stops a little short along flat directions (sleepstudy: SD of the
# intercept 24.74066, printed 24.741); BOBYQA run to rhoend = 1e-12 reaches the optimum
# (24.74045, REML criterion lower by 1e-9), which is what the tests pin.
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

# Seed tutorial: dung data, nlme::lme as the tutorial runs it, and the same model in lme4.
dung <- read.csv("data/dung.csv")
dung$oven_block <- factor(dung$oven_block)
m <- lme(pr_dung ~ flies, random = ~ 1 | oven_block, data = dung)
write_reml_json(m, file.path(out, "dung_lme.json"))
write.csv(data.frame(residual = unname(residuals(m))), file.path(out, "dung_lme_residuals.csv"),
          row.names = FALSE)
m <- lmer(pr_dung ~ flies + (1 | oven_block), data = dung, control = ctrl)
write_reml_json(m, file.path(out, "dung_lmer.json"))

# sleepstudy (the CSV shipped in data/, identical to lme4::sleepstudy).
sleep <- read.csv("data/sleepstudy.csv", colClasses = c(Subject = "character"))
m <- lmer(Reaction ~ Days + (Days | Subject), data = sleep, control = ctrl)
write_reml_json(m, file.path(out, "sleepstudy_lmer_reml.json"))
m <- lmer(Reaction ~ Days + (Days | Subject), data = sleep, REML = FALSE, control = ctrl)
write_reml_json(m, file.path(out, "sleepstudy_lmer_ml.json"))
# A random slope without a fixed slope (b1 = U1 in the level-2 equations).
m <- lmer(Reaction ~ 1 + (Days | Subject), data = sleep, control = ctrl)
write_reml_json(m, file.path(out, "sleepstudy_noslope_lmer.json"))

# High School and Beyond: random coefficients, and the cross-level model with Public as the
# reference level of Sector.
hsb <- read.csv("data/hsb.csv", colClasses = c(School = "character"))
hsb$Sector <- relevel(factor(hsb$Sector), ref = "Public")
m <- lmer(MathAch ~ cses + (cses | School), data = hsb, control = ctrl)
write_reml_json(m, file.path(out, "hsb_rc_lmer.json"))
m <- lmer(MathAch ~ cses * (MEANSES + Sector) + (cses | School), data = hsb, control = ctrl)
write_reml_json(m, file.path(out, "hsb_crosslevel_lmer.json"))
m <- lmer(MathAch ~ cses * (MEANSES + Sector) + (cses | School), data = hsb, REML = FALSE,
          control = ctrl)
write_reml_json(m, file.path(out, "hsb_crosslevel_lmer_ml.json"))

# A singular fit: lme4's Dyestuff2 (Box & Tiao 1973), whose between-batch SD is estimated as 0.
write.csv(Dyestuff2, file.path(out, "dyestuff2.csv"), row.names = FALSE)
m <- lmer(Yield ~ 1 + (1 | Batch), data = Dyestuff2, control = ctrl)
write_reml_json(m, file.path(out, "dyestuff2_lmer.json"))

writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
