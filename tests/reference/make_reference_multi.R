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
# The control of make_reference.R: BOBYQA run to rhoend = 1e-12 rather than lme4's default
# stopping rule, which stops a little short along flat directions.
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

# The grouping factors written in the formula, as vectors of their parts outer to inner: a/b/c
# gives a, a:b and a:b:c; a:b stays a:b.
written_groups <- function(f) {
  parts <- function(e) {
    if (is.call(e) && identical(e[[1]], as.name(":")))
      return(c(parts(e[[2]]), parts(e[[3]])))
    if (is.call(e) && identical(e[[1]], as.name("("))) return(parts(e[[2]]))
    deparse(e)
  }
  nested <- function(e) {
    if (is.call(e) && identical(e[[1]], as.name("/"))) {
      outer <- nested(e[[2]])
      inner <- parts(e[[3]])
      return(c(outer, list(c(outer[[length(outer)]], inner))))
    }
    list(parts(e))
  }
  walk <- function(e) {
    if (!is.call(e)) return(list())
    op <- as.character(e[[1]])
    if (op %in% c("|", "||")) return(nested(e[[3]]))
    unlist(lapply(as.list(e)[-1], walk), recursive = FALSE)
  }
  walk(f[[length(f)]])
}

# lme4's name of a grouping factor as its parts in lme4's order ("student:(school:(region))").
lme4_parts <- function(name) strsplit(gsub("[()]", "", name), ":", fixed = TRUE)[[1]]

# Map lme4's name of a grouping factor to the written parts (outer to inner) and the
# permutation that takes lme4's parts to them.
group_map <- function(name, written) {
  p <- lme4_parts(name)
  hits <- Filter(function(w) length(w) == length(p) && setequal(w, p), written)
  if (length(hits) == 0) stop("grouping factor ", name, " is not in the formula")
  w <- hits[[1]]
  list(name = paste(w, collapse = ":"), perm = match(w, p))
}

reorder_levels <- function(levels, perm) {
  if (length(perm) == 1) return(levels)
  s <- strsplit(levels, ":", fixed = TRUE)
  if (any(lengths(s) != length(perm))) stop("level labels with ':' in an id")
  vapply(s, function(x) paste(x[perm], collapse = ":"), "")
}

write_reml_json_v2 <- function(fit, path, data_path, formula = NULL, note = NULL,
                               refits = 0L) {
  stopifnot(inherits(fit, "merMod"))
  # lmer expands '||' in formula(fit); the formula as written is passed in.
  f <- if (is.null(formula)) formula(fit) else formula
  written <- written_groups(f)
  vc <- lme4::VarCorr(fit)
  cnms <- lme4::getME(fit, "cnms")          # names: the factors, not made unique
  flist <- lme4::getME(fit, "flist")
  bars <- lme4::findbars(f)
  bar_group <- vapply(bars, function(b) paste(deparse(b[[3]], width.cutoff = 500L), collapse = ""),
                      "")
  # lme4 (mkReTrms) sorts the terms by their number of levels, decreasing: rev(order(nl)) when
  # any later term has more levels than an earlier one.
  nl <- vapply(bar_group, function(g) nlevels(flist[[g]]), 0L)
  ord <- if (any(diff(nl) > 0)) rev(order(nl)) else seq_along(nl)
  stopifnot(identical(unname(bar_group[ord]), names(cnms)), length(vc) == length(ord))
  random <- lapply(seq_along(vc), function(k) {
    g <- group_map(names(cnms)[k], written)
    cov_u <- vc[[k]]
    list(group = g$name, lme4_group = names(cnms)[k], block = ord[k],
         nlevels = nlevels(flist[[names(cnms)[k]]]),
         terms = I(colnames(cov_u)), sd = I(unname(attr(cov_u, "stddev"))),
         corr = unname(matrix(attr(cov_u, "correlation"), nrow(cov_u))))
  })
  re <- lme4::ranef(fit, condVar = FALSE)
  modes <- lapply(names(re), function(nm) {
    g <- group_map(nm, written)
    m <- as.matrix(re[[nm]])
    list(group = g$name, lme4_group = nm,
         levels = I(reorder_levels(rownames(re[[nm]]), g$perm)),
         terms = I(colnames(m)), values = unname(m))
  })
  method <- if (lme4::isREML(fit)) "REML" else "ML"
  lme4_msgs <- as.character(fit@optinfo$conv$lme4$messages)
  opt_msgs <- if (fit@optinfo$conv$opt != 0) as.character(fit@optinfo$message) else character(0)
  singular_msg <- grepl("singular", lme4_msgs, fixed = TRUE)
  fe <- lme4::fixef(fit)
  v <- as.matrix(vcov(fit))
  out <- list(
    format = "bayesmix-reml",
    version = 2L,
    source = paste0("lme4::lmer (lme4 ", packageVersion("lme4"), ")"),
    method = method,
    formula = paste(deparse(f, width.cutoff = 500L), collapse = " "),
    outcome = as.character(f[[2]]),
    nobs = as.integer(nobs(fit)),
    fixed = lapply(seq_along(fe), function(k) list(
      term = names(fe)[k], estimate = unname(fe[k]), se = unname(sqrt(v[k, k]))
    )),
    vcov = unname(v),
    random = random,
    sigma = sigma(fit),
    criterion = if (method == "REML") lme4::REMLcrit(fit) else deviance(fit),
    loglik = as.numeric(logLik(fit)),
    theta = I(unname(lme4::getME(fit, "theta"))),
    converged = fit@optinfo$conv$opt == 0 && all(singular_msg),
    singular = lme4::isSingular(fit),
    messages = I(c(opt_msgs, lme4_msgs)),
    modes = modes,
    data = data_path,
    refits = refits
  )
  if (!is.null(note)) out$note <- note
  jsonlite::write_json(out, path, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                       na = "null")
  invisible(out)
}

fit_both <- function(formula, data, data_path, stem, methods = c("REML", "ML"), note = NULL) {
  for (method in methods) {
    reml <- method == "REML"
    crit <- function(m) if (reml) REMLcrit(m) else deviance(m)
    m <- lmer(formula, data = data, REML = reml, control = ctrl)
    # Restart BOBYQA from its optimum while that lowers the criterion (at most 3 times): along
    # a flat direction one run can stop short (four_level: SD of region by 2e-4, criterion by
    # 9e-8); elsewhere a restart moves the SDs by 1e-6 at most.
    refits <- 0L
    while (refits < 3L) {
      m2 <- lmer(formula, data = data, REML = reml, control = ctrl, start = getME(m, "theta"))
      if (crit(m2) >= crit(m)) break
      m <- m2
      refits <- refits + 1L
    }
    file <- file.path(out, paste0(stem, "_", tolower(method), ".json"))
    o <- write_reml_json_v2(m, file, data_path, formula, note, refits)
    cat(sprintf("%-30s %-4s refits %d sd=%s sigma=%.6f crit=%.6f%s\n", basename(file), method,
                refits,
                paste(vapply(o$random, function(r) paste(sprintf("%.5f", r$sd), collapse = "/"),
                             ""), collapse = ","),
                o$sigma, o$criterion, if (o$singular) " SINGULAR" else ""))
  }
}

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
