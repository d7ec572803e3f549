# Regenerate the pinned lme4 reference fits of multilevel models with more than one grouping
# factor (nested: three and four levels; crossed) in tests/reference/multi/*.json.
#
#   Rscript tests/reference/make_reference_multi.R     (from the repository root)
#
# Needs R with lme4 and jsonlite (Debian: apt-get install r-cran-lme4 r-cran-jsonlite). The data
# are read from data/*.csv (made by data/export_lme4_data.R, data/simulate_four_level.py and
# data/simulate_crossed_slope.py), so the fits are those of the files the tests read. The tests
# only read the JSON files; they never run R.
#
# JSON format "bayesmix-reml" version 2 (one file per fit; numbers at full precision):
#   format, version (2), source, method ("REML" | "ML"), formula, outcome, nobs,
#   fixed: [{term, estimate, se}], vcov: [[...]] (of the fixed effects),
#   random: one entry per random-effects term in lme4's order (the order of VarCorr and of
#     theta): {group, lme4_group, block, nlevels, terms, sd, corr}.
#     group: the grouping factor with its parts written outer to inner ("batch:cask",
#       "region:district:school:student"); lme4 names the factors made by "/" inner to outer
#       ("cask:batch", "student:(school:(district:region))"), kept in lme4_group. Terms split
#       by "||" keep the factor's name ("Subject" twice; lme4's VarCorr says "Subject.1").
#     block: 1-based index of the term in the formula's random part as lme4 expands it
#       (lme4::findbars: "/" and "||" expanded, in formula order); unique in a file.
#     sd: SDs of the terms; corr: their correlation matrix ([[1]] for one term).
#   sigma, criterion (REML criterion for REML, deviance = -2 logLik for ML), loglik, theta,
#   converged (the optimiser stopped normally and lme4's convergence checks passed; a singular
#     fit is reported in "singular", not here), singular (lme4::isSingular), messages,
#   modes: one entry per grouping factor as lme4::ranef gives it: {group, lme4_group, levels,
#     terms, values}; levels are text in ranef's order with their parts outer to inner like
#     group ("A:a" for batch A, cask a; lme4 writes "a:A"); values[i][k] is the mode of term k
#     of level i,
#   data: the CSV the model was fitted to,
#   refits: how many times BOBYQA was restarted from its optimum (see fit_both below).
suppressPackageStartupMessages({
  library(lme4)
})
out <- "tests/reference/multi"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
source("scripts/write_reml_multi_json.R")

# a. Pastes: casks a, b, c in every batch, so the cask is batch:cask.
path <- "data/pastes.csv"
pastes <- read.csv(path, colClasses = c(batch = "character", cask = "character",
                                        sample = "character"))
fit_both(strength ~ 1 + (1 | batch/cask), pastes, path, "pastes")

# b. Penicillin: plate and sample crossed.
path <- "data/penicillin.csv"
pen <- read.csv(path, colClasses = c(plate = "character", sample = "character"))
fit_both(diameter ~ 1 + (1 | plate) + (1 | sample), pen, path, "penicillin")

# c. sleepstudy with uncorrelated intercept and slope (lme4 makes two terms of Subject).
path <- "data/sleepstudy.csv"
sleep <- read.csv(path, colClasses = c(Subject = "character"))
fit_both(Reaction ~ Days + (Days || Subject), sleep, path, "sleepstudy_uncorr")

# d. egsingle: years in children in schools (black is 0/1, lowinc a percentage).
path <- "data/egsingle.csv"
eg <- read.csv(path, colClasses = c(schoolid = "character", childid = "character"))
fit_both(math ~ 1 + year + black + lowinc + year:black + year:lowinc + (1 + year | schoolid) +
           (1 + year | schoolid:childid), eg, path, "egsingle_3level")
fit_both(math ~ year + (1 | schoolid/childid), eg, path, "egsingle_nested", methods = "REML")

# e. Four nested levels, ids repeating across parents (data/simulate_four_level.py).
path <- "data/four_level.csv"
four <- read.csv(path, colClasses = c(region = "character", district = "character",
                                      school = "character", student = "character"))
fit_both(y ~ x + (1 | region/district/school/student), four, path, "four_level",
         methods = "REML")

# f. Crossed with a random slope (data/simulate_crossed_slope.py).
path <- "data/crossed_slope.csv"
cs <- read.csv(path, colClasses = c(subject = "character", item = "character"))
fit_both(y ~ x + (x | subject) + (1 | item), cs, path, "crossed_slope")

# InstEval (73,421 ratings; students and lecturers crossed), for the benchmark.
path <- "data/insteval.csv.gz"
ie <- read.csv(gzfile(path), colClasses = c(s = "character", d = "character"))
fit_both(y ~ service + (1 | s) + (1 | d), ie, path, "insteval", methods = "REML",
         note = "service read from the CSV as 0/1 numbers, so its term is 'service'")

writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
