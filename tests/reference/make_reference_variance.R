# Regenerate the pinned variance-partition references in tests/reference/variance/*.json:
# performance::icc, performance::r2_nakagawa and insight::get_variance of lme4 fits, and the
# Rights & Sterba (2019) decomposition of a two-level random-slope model.
#
#   Rscript tests/reference/make_reference_variance.R     (from the repository root)
#
# Needs R with lme4, performance, insight and jsonlite (versions in variance/sessionInfo.txt).
# The data are the CSVs in data/; nothing is downloaded. The tests only read the JSON files.
#
# Each file holds: the model (formula, family, data file), lme4's estimates (fixef, VarCorr per
# grouping factor, sigma), performance's ICCs (adjusted, unadjusted; by group), r2_nakagawa
# (marginal, conditional), every component of insight::get_variance(), insight::n_obs(), and
# any warning performance raised. For Poisson models, the intercept of insight's null model
# (same random part, fixed part `~ 1`), which sets the distribution-specific variance
# log(1 + 1/exp(b0_null)). `rights_sterba` (hsb_centred only) is computed below from lme4's
# estimates with the formulas of Rights & Sterba (2019, Table 1 and eqs. 4-10), written out here
# independently of bayesmix.
suppressPackageStartupMessages({
  library(lme4)
  library(performance)
  library(insight)
  library(jsonlite)
})
out <- "tests/reference/variance"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

# Tight optimiser control, as the other reference scripts (converged estimates, not lme4's
# slightly early default stop).
lctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
gctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-10,
                      optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

collect <- function(expr) {
  notes <- character(0)
  value <- withCallingHandlers(expr,
    warning = function(w) {
      notes <<- c(notes, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      notes <<- c(notes, trimws(conditionMessage(m)))
      invokeRestart("muffleMessage")
    })
  list(value = value, notes = notes)
}

num <- function(x) if (is.null(x)) NULL else as.list(unlist(x))

varcorr_list <- function(m) {
  vc <- VarCorr(m)
  lapply(names(vc), function(g) {
    s <- vc[[g]]
    list(group = g, terms = I(rownames(s)), cov = unclass(matrix(s, nrow(s))))
  })
}

write_variance <- function(m, stem, data_path, formula_text, family, extra = list()) {
  icc <- collect(performance::icc(m))
  icc_g <- collect(performance::icc(m, by_group = TRUE))
  r2 <- collect(performance::r2_nakagawa(m))
  gv <- collect(insight::get_variance(m))
  v <- gv$value
  o <- list(
    format = "bayesmix-variance-reference", version = 1L,
    model = stem, data = data_path, formula = formula_text, family = family,
    nrow = nrow(model.frame(m)), n_obs = insight::n_obs(m),
    reml = isREML(m),
    fixef = as.list(fixef(m)),
    varcorr = varcorr_list(m),
    sigma = if (family == "gaussian") sigma(m) else NULL,
    icc = list(adjusted = icc$value$ICC_adjusted, unadjusted = icc$value$ICC_unadjusted),
    icc_by_group = if (is.data.frame(icc_g$value))
      setNames(as.list(icc_g$value$ICC), icc_g$value$Group) else NULL,
    r2_nakagawa = list(marginal = unname(r2$value$R2_marginal),
                       conditional = unname(r2$value$R2_conditional)),
    get_variance = list(
      var_fixed = v$var.fixed, var_random = v$var.random, var_residual = v$var.residual,
      var_distribution = v$var.distribution, var_dispersion = v$var.dispersion,
      var_intercept = num(v$var.intercept), var_slope = num(v$var.slope)),
    warnings = I(unique(c(icc$notes, icc_g$notes, r2$notes, gv$notes))),
    versions = list(lme4 = as.character(packageVersion("lme4")),
                    performance = as.character(packageVersion("performance")),
                    insight = as.character(packageVersion("insight")))
  )
  o <- c(o, extra)
  write(toJSON(o, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
        file.path(out, paste0(stem, ".json")))
  cat(sprintf("%-22s ICC adj %.6f unadj %.6f  R2 m %.6f c %.6f\n", stem,
              o$icc$adjusted, o$icc$unadjusted, o$r2_nakagawa$marginal,
              o$r2_nakagawa$conditional))
  if (length(o$warnings)) cat("    NOTES:", paste(o$warnings, collapse = " | "), "\n")
  invisible(o)
}

# Rights & Sterba (2019), cluster-mean-centred level-1 predictors: the total variance of y is
# f1 + f2 + v + m + sigma^2 with f1 = g_w' Phi_w g_w (fixed, within), f2 = g_b' Phi_b g_b
# (fixed, between), v = tr(T Sigma) over the random covariates (slope variation), m = mbar' T
# mbar with mbar the means of (1, random covariates) (intercept variation), all (co)variances
# the sample ones (n - 1) over the rows, as in the authors' r2mlm.
rights_sterba <- function(m, data, within, between, random) {
  b <- fixef(m)
  Tau <- unclass(matrix(VarCorr(m)[[1]], length(random) + 1))
  Xw <- as.matrix(data[, within, drop = FALSE])
  Xb <- as.matrix(data[, between, drop = FALSE])
  W <- cbind(1, as.matrix(data[, random, drop = FALSE]))
  Sig <- cov(W)  # row and column of the constant are 0
  f1 <- drop(t(b[within]) %*% cov(Xw) %*% b[within])
  f2 <- drop(t(b[between]) %*% cov(Xb) %*% b[between])
  v <- sum(Tau * Sig)
  mbar <- colMeans(W)
  mm <- drop(t(mbar) %*% Tau %*% mbar)
  s2 <- sigma(m)^2
  total <- f1 + f2 + v + mm + s2
  list(components = list(f1 = f1, f2 = f2, v = v, m = mm, residual = s2, total = total),
       proportions = list(f1 = f1 / total, f2 = f2 / total, v = v / total, m = mm / total,
                          residual = s2 / total),
       within = within, between = between, random = random)
}

# The non-centred form of the same paper (level-1 predictors not centred at cluster means):
# f = g' Phi g over every column of X, v and m as above (mbar has non-zero slope entries).
rights_sterba_uncentred <- function(m) {
  X <- getME(m, "X")
  W <- as.matrix(getME(m, "mmList")[[1]])
  Tau <- unclass(matrix(VarCorr(m)[[1]], ncol(W)))
  b <- fixef(m)
  f <- drop(t(b) %*% cov(X) %*% b)
  v <- sum(Tau * cov(W))
  mbar <- colMeans(W)
  mm <- drop(t(mbar) %*% Tau %*% mbar)
  s2 <- sigma(m)^2
  total <- f + v + mm + s2
  list(components = list(f = f, v = v, m = mm, residual = s2, total = total),
       proportions = list(f = f / total, v = v / total, m = mm / total, residual = s2 / total))
}

# 1. sleepstudy, random intercept.
ss_path <- "data/sleepstudy.csv"
ss <- read.csv(ss_path, colClasses = c(Subject = "character"))
m <- lmer(Reaction ~ Days + (1 | Subject), ss, control = lctrl)
write_variance(m, "sleepstudy_ri", ss_path, "Reaction ~ Days + (1 | Subject)", "gaussian")

# 2. sleepstudy, correlated random slope.
m <- lmer(Reaction ~ Days + (Days | Subject), ss, control = lctrl)
write_variance(m, "sleepstudy_rs", ss_path, "Reaction ~ Days + (Days | Subject)", "gaussian",
               extra = list(rights_sterba_uncentred = rights_sterba_uncentred(m)))

# 3. hsb as models/hsb.toml: cross-level interactions, Sector reference level Public.
hsb_path <- "data/hsb.csv"
hsb <- read.csv(hsb_path, colClasses = c(School = "character"))
hsb$Sector <- factor(hsb$Sector, levels = c("Public", "Catholic"))
f <- MathAch ~ cses * (MEANSES + Sector) + (cses | School)
m <- lmer(f, hsb, control = lctrl)
write_variance(m, "hsb_crosslevel", hsb_path, "MathAch ~ cses * (MEANSES + Sector) + (cses | School)",
               "gaussian")

# 4. hsb with SES centred at the sample school mean (ses_w = SES - SES_schoolmean, exactly
# cluster-mean-centred) and the school mean as a level-2 predictor: Rights & Sterba's setting.
hsb$ses_w <- hsb$SES - hsb$SES_schoolmean
m <- lmer(MathAch ~ ses_w + SES_schoolmean + (ses_w | School), hsb, control = lctrl)
rs <- rights_sterba(m, hsb, within = "ses_w", between = "SES_schoolmean", random = "ses_w")
write_variance(m, "hsb_centred", hsb_path,
               "MathAch ~ ses_w + SES_schoolmean + (ses_w | School), ses_w = SES - SES_schoolmean",
               "gaussian", extra = list(rights_sterba = rs))

# 5. Penicillin: plates crossed with samples.
pen_path <- "data/penicillin.csv"
pen <- read.csv(pen_path, colClasses = c(plate = "character", sample = "character"))
m <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pen, control = lctrl)
write_variance(m, "penicillin", pen_path, "diameter ~ 1 + (1 | plate) + (1 | sample)", "gaussian")

# 6. cbpp: binomial with trials (logit: distribution variance pi^2/3).
cb_path <- "data/cbpp.csv"
cbpp <- read.csv(cb_path, colClasses = c(herd = "character", period = "character"))
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial,
           control = gctrl)
write_variance(m, "cbpp", cb_path, "cbind(incidence, size - incidence) ~ period + (1 | herd)",
               "binomial")

# 7. Contraception: Bernoulli with a correlated random slope of urban.
cc_path <- "data/contraception.csv"
cc <- read.csv(cc_path, colClasses = c(woman = "character", district = "character",
                                       livch = "character"))
m <- glmer(use ~ age + urban + livch + (1 + urban | district), cc, binomial, control = gctrl)
write_variance(m, "contraception", cc_path, "use ~ age + urban + livch + (1 + urban | district)",
               "bernoulli")

# 8. grouseticks: Poisson with an observation-level effect (INDEX; insight counts it as
# dispersion, part of the residual variance) and brood and location intercepts.
gt_path <- "data/grouseticks.csv"
gt <- read.csv(gt_path, colClasses = c(INDEX = "character", BROOD = "character",
                                       YEAR = "character", LOCATION = "character"))
f <- TICKS ~ YEAR + zHEIGHT + (1 | INDEX) + (1 | BROOD) + (1 | LOCATION)
m <- glmer(f, gt, poisson, control = gctrl)
nm <- insight::null_model(m)
write_variance(m, "grouseticks", gt_path, deparse(f), "poisson",
               extra = list(null_model = list(fixef = as.list(fixef(nm)),
                                              varcorr = varcorr_list(nm))))

# 9. Simulated crossed Poisson counts with exposure t: the null model keeps offset(log(t)).
cp_path <- "data/crossed_poisson.csv"
cp <- read.csv(cp_path, colClasses = c(a = "character", b = "character"))
f <- y ~ x + offset(log(t)) + (1 | a) + (1 | b)
m <- glmer(f, cp, poisson, control = gctrl)
nm <- insight::null_model(m)
write_variance(m, "crossed_poisson", cp_path, deparse(f), "poisson",
               extra = list(null_model = list(fixef = as.list(fixef(nm)),
                                              varcorr = varcorr_list(nm))))

writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
