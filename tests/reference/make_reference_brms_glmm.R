# brms posteriors of two GLMM model files, with bayesmix's default priors written out, so the
# posterior means can be compared (tests/test_models.py::test_glmm_posteriors_agree_with_brms).
#
#   Rscript tests/reference/make_reference_brms_glmm.R     (from the repository root)
#
# bayesmix's defaults for a logit model (README, "Non-Gaussian outcomes"; bayesmix/priors.py
# with s_y = 1 on the link scale): the intercept at the predictors' means ~ Normal(logit(p),
# 2.5) with p the pooled proportion (brms's `Intercept` is the same intercept: brms centres
# the predictors), each slope ~ Normal(0, 2.5 / sd(x_k)) with sd the population SD of the
# column (dummies included), the SD of a random intercept ~ half Student-t(3, 0, 1).
suppressPackageStartupMessages({library(brms); library(jsonlite)})

psd <- function(x) sqrt(mean((x - mean(x))^2))

fit_one <- function(name, formula, data, cols, p, seed) {
  pri <- c(set_prior(sprintf("normal(%.15g, 2.5)", qlogis(p)), class = "Intercept"),
           set_prior("student_t(3, 0, 1)", class = "sd"))
  for (k in names(cols)) {
    pri <- c(pri, set_prior(sprintf("normal(0, %.15g)", 2.5 / psd(cols[[k]])), class = "b",
                            coef = k))
  }
  m <- brm(formula, data = data, prior = pri, chains = 4, cores = 2, iter = 4000,
           warmup = 1000, seed = seed, refresh = 0, silent = 2)
  s <- summary(m)
  fixed <- s$fixed
  random <- do.call(rbind, s$random)
  out <- list(
    source = sprintf("brms %s, rstan %s", packageVersion("brms"), packageVersion("rstan")),
    formula = paste(deparse(formula), collapse = " "),
    draws = "4 chains x 3000 after 1000 warm-up",
    fixed = lapply(seq_len(nrow(fixed)), function(i) list(term = rownames(fixed)[i],
      mean = fixed$Estimate[i], sd = fixed$Est.Error[i], ess = fixed$Bulk_ESS[i],
      rhat = fixed$Rhat[i])),
    sd = lapply(seq_len(nrow(random)), function(i) list(term = rownames(random)[i],
      mean = random$Estimate[i], sd = random$Est.Error[i], ess = random$Bulk_ESS[i],
      rhat = random$Rhat[i])),
    divergences = sum(rstan::get_divergent_iterations(m$fit)),
    priors = as.character(pri$prior))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             file.path("tests", "reference", "glmm", paste0(name, "_brms.json")))
}

cbpp <- read.csv("data/cbpp.csv")
cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period)
# bayesmix's atoms are the rows' dummies (one row per herd and period)
cols <- list(period2 = as.numeric(cbpp$period == "2"), period3 = as.numeric(cbpp$period == "3"),
             period4 = as.numeric(cbpp$period == "4"))
fit_one("cbpp", bf(incidence | trials(size) ~ period + (1 | herd), family = binomial()), cbpp,
        cols,
        sum(cbpp$incidence) / sum(cbpp$size), 1)

gu <- read.csv("data/guimmun.csv")
gu$comm <- factor(gu$comm); gu$mom <- factor(gu$mom)
cols <- list(kid2pY = as.numeric(gu$kid2p == "Y"), mom25pY = as.numeric(gu$mom25p == "Y"),
             ruralY = as.numeric(gu$rural == "Y"))
fit_one("guimmun", bf(immun ~ kid2p + mom25p + rural + (1 | comm/mom), family = bernoulli()),
        gu, cols, mean(gu$immun), 2)
