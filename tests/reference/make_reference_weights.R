# Regenerate the pinned lme4 fits that check bayesmix's level-1 sampling weights in
# tests/reference/weights/*.json.
#
#   Rscript tests/reference/make_reference_weights.R     (from the repository root)
#
# Why lmer's precision weights check the survey pseudo-likelihood: raising each row's normal
# density to the power w_i gives the density of N(mu_i, sigma^2 / w_i) times
# (2 pi sigma^2)^(-(w_i - 1)/2) w_i^(-1/2). With level-1 weights scaled to sum to each
# cluster's size (bayesmix's default scale = "size"), sum(w_i) = n and the extra factor is a
# constant, so the pseudo-ML / pseudo-REML estimates are lmer's with weights = w (the
# criteria differ by the constant sum(log w_i)). The weights are made from HSB's own columns
# (no random numbers): w = 1 + [Minority = Yes] + 0.5 [Sex = Female].
suppressPackageStartupMessages(library(lme4))
source("scripts/write_reml_json.R")
out <- "tests/reference/weights"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

hsb <- read.csv("data/hsb.csv", colClasses = c(School = "character"))
hsb$w <- 1 + (hsb$Minority == "Yes") + 0.5 * (hsb$Sex == "Female")
hsb$w_size <- hsb$w * ave(rep(1, nrow(hsb)), hsb$School, FUN = sum) / ave(hsb$w, hsb$School,
                                                                           FUN = sum)
for (method in c("REML", "ML")) {
  m <- lmer(MathAch ~ SES + (SES | School), data = hsb, weights = w_size,
            REML = method == "REML", control = ctrl)
  write_reml_json(m, file.path(out, paste0("hsb_level1_", tolower(method), ".json")),
                  note = "weights = w scaled to cluster size; criterion includes lme4's weight term")
}
jsonlite::write_json(list(sum_log_w = sum(log(hsb$w_size))), file.path(out, "hsb_level1_weights.json"),
                     digits = NA, auto_unbox = TRUE)
writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
