# Regenerate the pinned lme4 fits of models with transformed and centred variables in
# tests/reference/transforms/*.json.
#
#   Rscript tests/reference/make_reference_transforms.R     (from the repository root)
#
# Needs R with lme4 and jsonlite. The centred columns are computed here by hand, the way an lme4
# user does it (ave(), tapply()), under the names bayesmix gives the transformed variables
# (`group(SES)`, `mean(SES)`, ...), so that the fits' term names are bayesmix's. R's own
# transformations (poly, log, I, scale, ordered factors) are left to R's formula machinery. The
# tests only read the JSON files; they never run R.
suppressPackageStartupMessages(library(lme4))
source("scripts/write_reml_json.R")
out <- "tests/reference/transforms"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
source("scripts/write_reml_multi_json.R")  # fit_both() for three levels; writes into `out`

# a. HSB, R&B chapter 5: SES centred at its school mean (group), the school mean of SES as a
# level-2 predictor (the contextual effect), MEANSES centred at its grand mean over schools
# (each school once, as HLM's level-2 file).
hsb <- read.csv("data/hsb.csv", colClasses = c(School = "character"), check.names = FALSE)
hsb$`mean(SES)` <- ave(hsb$SES, hsb$School)
hsb$`group(SES)` <- hsb$SES - hsb$`mean(SES)`
school_meanses <- tapply(hsb$MEANSES, hsb$School, function(v) v[1])
hsb$`grand(MEANSES)` <- hsb$MEANSES - mean(school_meanses)
hsb$`grand(SES)` <- hsb$SES - mean(hsb$SES)
hsb$Sector <- factor(hsb$Sector)  # reference Catholic, the first level
m <- lmer(MathAch ~ `group(SES)` + `mean(SES)` + Sector + `group(SES)`:`grand(MEANSES)` +
            (`group(SES)` | School), data = hsb, control = ctrl)
write_reml_json(m, file.path(out, "hsb_contextual_lmer.json"))
# Grand-mean centred SES with the school mean: γ01 is the contextual effect (R&B Table 5.x).
m <- lmer(MathAch ~ `grand(SES)` + `mean(SES)` + (1 | School), data = hsb, control = ctrl)
write_reml_json(m, file.path(out, "hsb_grand_contextual_lmer.json"))
# A reference level chosen in the formula: C(Sector, Treatment("Public")).
hsb$`C(Sector, Treatment("Public"))` <- relevel(factor(hsb$Sector), ref = "Public")
m <- lmer(MathAch ~ `group(SES)` + `C(Sector, Treatment("Public"))` + (1 | School), data = hsb,
          control = ctrl)
write_reml_json(m, file.path(out, "hsb_reference_lmer.json"))

# b. sleepstudy with R's transformations, left to R's formula machinery.
sleep <- read.csv("data/sleepstudy.csv", colClasses = c(Subject = "character"))
m <- lmer(Reaction ~ poly(Days, 2) + (Days | Subject), data = sleep, control = ctrl)
write_reml_json(m, file.path(out, "sleepstudy_poly_lmer.json"))
# predict() applies the fitted poly() coefficients to new Days (makepredictcall).
new <- data.frame(Days = c(0.5, 4.5, 9, 12))
coefs <- attr(poly(sleep$Days, 2), "coefs")
jsonlite::write_json(list(Days = new$Days, fixed = unname(predict(m, new, re.form = NA)),
                          alpha = coefs$alpha, norm2 = coefs$norm2,
                          poly3_raw_check = unname(poly(sleep$Days, 3)[1:12, ])),
                     file.path(out, "sleepstudy_poly_predict.json"), digits = NA,
                     pretty = TRUE)
m <- lmer(log(Reaction) ~ log(Days + 1) + I(Days^2) + (1 | Subject), data = sleep,
          control = ctrl)
write_reml_json(m, file.path(out, "sleepstudy_log_lmer.json"))
m <- lmer(Reaction ~ scale(Days) + (scale(Days) | Subject), data = sleep, control = ctrl)
write_reml_json(m, file.path(out, "sleepstudy_scale_lmer.json"))
# An ordered factor: R codes it with polynomial contrasts (contr.poly: .L, .Q, .C).
sleep$period <- ordered(pmin(sleep$Days %/% 3, 3))
m <- lmer(Reaction ~ period + (1 | Subject), data = sleep, control = ctrl)
write_reml_json(m, file.path(out, "sleepstudy_ordered_lmer.json"))

# c. Three levels (egsingle): black, a child-level variable, centred at its school mean over
# children (each child once); lowinc, a school-level variable, at its grand mean over schools.
eg <- read.csv("data/egsingle.csv", colClasses = c(schoolid = "character",
                                                   childid = "character"), check.names = FALSE)
child <- eg[!duplicated(eg$childid), c("childid", "schoolid", "black")]
school_black <- tapply(child$black, child$schoolid, mean)
eg$`group(black)` <- eg$black - school_black[eg$schoolid]
school <- eg[!duplicated(eg$schoolid), c("schoolid", "lowinc")]
eg$`grand(lowinc)` <- eg$lowinc - mean(school$lowinc)
fit_both(math ~ year + `group(black)` + `grand(lowinc)` + (1 | schoolid/childid), eg,
         "data/egsingle.csv", "egsingle_centred", methods = "REML")

writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
