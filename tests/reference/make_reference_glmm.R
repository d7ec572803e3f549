# Regenerate the pinned lme4::glmer reference fits of GLMMs (Bernoulli, binomial, Poisson) in
# tests/reference/glmm/*.json.
#
#   Rscript tests/reference/make_reference_glmm.R     (from the repository root)
#
# Needs R with lme4 and jsonlite (Debian: apt-get install r-cran-lme4 r-cran-jsonlite). The data
# are read from data/*.csv (made by data/export_glmm_data.R, data/simulate_bernoulli_agq.R and
# data/simulate_crossed_poisson.py; nothing is downloaded), so the fits are those of the files
# the tests read. The tests only read the JSON files; they never run R. The files are written by
# write_reml_json() of scripts/write_reml_json.R (its glmer part, write_glmm_json); the fields
# are described in tests/reference/README.md.
suppressPackageStartupMessages({
  library(lme4)
})
source("scripts/write_reml_json.R")
out <- "tests/reference/glmm"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

# BOBYQA in both stages, run to rhoend = 1e-12, and the penalised IRLS for the conditional modes
# run to tolPwrss = 1e-10 instead of lme4's 1e-7: with 1e-7 the inner iterations stop early
# enough to raise the Laplace deviance by up to ~6e-4 (cbpp; the deviance function evaluated
# with tolPwrss 1e-10 and 1e-13 agrees to 1e-10), and the optimum moves by ~3e-4 relative.
ctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-10,
                     optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

# Fit, collecting warnings and messages instead of printing them.
quiet_glmer <- function(...) {
  notes <- character(0)
  fit <- withCallingHandlers(
    glmer(...),
    warning = function(w) {
      notes <<- c(notes, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      notes <<- c(notes, trimws(conditionMessage(m)))
      invokeRestart("muffleMessage")
    })
  list(fit = fit, notes = notes)
}

fit_glmm <- function(formula, family, data, data_path, stem, nAGQ = 1L, note = NULL) {
  r <- quiet_glmer(formula, data = data, family = family, nAGQ = nAGQ, control = ctrl)
  m <- r$fit
  notes <- r$notes
  crit <- function(m) -2 * as.numeric(logLik(m))
  # Restart BOBYQA from its optimum while that lowers -2 logLik (at most 3 times).
  refits <- 0L
  while (refits < 3L) {
    r2 <- quiet_glmer(formula, data = data, family = family, nAGQ = nAGQ, control = ctrl,
                      start = list(theta = getME(m, "theta"), fixef = fixef(m)))
    if (crit(r2$fit) >= crit(m)) break
    m <- r2$fit
    notes <- r2$notes
    refits <- refits + 1L
  }
  # The same model with lme4's default control, as lme4's documentation and printouts show it.
  d <- quiet_glmer(formula, data = data, family = family, nAGQ = nAGQ)
  default_control <- list(
    criterion = crit(d$fit),
    fixed = as.list(fixef(d$fit)),
    theta = I(unname(getME(d$fit, "theta"))),
    optimizer = I(as.character(d$fit@optinfo$optimizer)),
    messages = I(c(d$notes, as.character(d$fit@optinfo$conv$lme4$messages)))
  )
  extra <- list(warnings = I(notes), default_control = default_control)
  file <- file.path(out, paste0(stem, ".json"))
  o <- write_glmm_json(m, file, data = data_path, formula = formula, note = note,
                       refits = refits, extra = extra)
  cat(sprintf("%-28s nAGQ %2d refits %d  -2logLik %.6f  deviance() %.6f  (default control: %.6f)\n",
              basename(file), nAGQ, refits, o$criterion, o$deviance, default_control$criterion))
  cat(sprintf("    beta: %s\n", paste(sprintf("%s=%.6f", names(fixef(m)), fixef(m)),
                                       collapse = ", ")))
  for (b in o$random)
    cat(sprintf("    %-10s sd %s%s\n", b$group, paste(sprintf("%.6f", b$sd), collapse = "/"),
                if (length(b$sd) > 1) sprintf(" corr %.6f", b$corr[1, 2]) else ""))
  if (length(notes) || length(o$messages))
    cat("    NOTES:", paste(unique(c(notes, o$messages)), collapse = " | "), "\n")
  if (o$singular) cat("    SINGULAR\n")
  invisible(o)
}

# a. cbpp: contagious bovine pleuropneumonia in 15 herds, 4 periods (binomial, trials = size).
path <- "data/cbpp.csv"
cbpp_d <- read.csv(path, colClasses = c(herd = "character", period = "character"))
f <- cbind(incidence, size - incidence) ~ period + (1 | herd)
fit_glmm(f, binomial, cbpp_d, path, "cbpp_laplace", nAGQ = 1L)
fit_glmm(f, binomial, cbpp_d, path, "cbpp_agq9", nAGQ = 9L)

# b. grouseticks: ticks on red grouse chicks; an observation-level effect (INDEX), broods and
# locations (broods lie within locations, ids unique); zHEIGHT is the standardised altitude.
path <- "data/grouseticks.csv"
gt <- read.csv(path, colClasses = c(INDEX = "character", BROOD = "character",
                                    YEAR = "character", LOCATION = "character"))
fit_glmm(TICKS ~ YEAR + zHEIGHT + (1 | INDEX) + (1 | BROOD) + (1 | LOCATION), poisson, gt, path,
         "grouseticks_laplace")

# c. Contraception (Bangladesh Fertility Survey 1989): women in 60 districts, a correlated
# random slope of urban; use and urban are 0/1 numbers, livch a factor (reference level "0").
path <- "data/contraception.csv"
cc <- read.csv(path, colClasses = c(woman = "character", district = "character",
                                    livch = "character"))
fit_glmm(use ~ age + urban + livch + (1 + urban | district), binomial, cc, path,
         "contraception_laplace")

# d. guImmun: children in mothers in communities (three levels); immun 0/1, kid2p, mom25p and
# rural are factors N/Y (terms kid2pY, mom25pY, ruralY).
path <- "data/guimmun.csv"
gi <- read.csv(path, colClasses = c(kid = "character", mom = "character", comm = "character"))
fit_glmm(immun ~ kid2p + mom25p + rural + (1 | comm/mom), binomial, gi, path, "guimmun_laplace")

# e. Simulated crossed Poisson with exposure t (data/simulate_crossed_poisson.py).
path <- "data/crossed_poisson.csv"
cp <- read.csv(path, colClasses = c(a = "character", b = "character"))
fit_glmm(y ~ x + offset(log(t)) + (1 | a) + (1 | b), poisson, cp, path, "crossed_poisson_laplace")

# f. Simulated two-level Bernoulli with one scalar random intercept (data/simulate_bernoulli_agq.R):
# Laplace and adaptive Gauss-Hermite with 15 nodes.
path <- "data/sim_bernoulli_agq.csv"
sb <- read.csv(path, colClasses = c(g = "character"))
fit_glmm(y ~ x + (1 | g), binomial, sb, path, "sim_bernoulli_laplace", nAGQ = 1L)
fit_glmm(y ~ x + (1 | g), binomial, sb, path, "sim_bernoulli_agq15", nAGQ = 15L)

writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
